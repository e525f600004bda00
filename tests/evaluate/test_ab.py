"""Tests of the A/B read-out: hand-computed metrics, planted lifts, A/A coverage, CUPED, SRM."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from rich.console import Console

from characterflywheel.evaluate.ab import ABResult, analyze_ab
from characterflywheel.evaluate.ab_render import plot_ab, render_ab

START = datetime(2026, 11, 24, tzinfo=timezone.utc)
USER = {"role": "user", "content": "hey"}
BOT = {"role": "assistant", "content": "Arr!", "signals": {"continued": True, "thumbs": None}}
BOT_UP = {"role": "assistant", "content": "Arr!", "signals": {"continued": True, "thumbs": "up"}}
BOT_DOWN = {"role": "assistant", "content": "Arr!", "signals": {"continued": False, "thumbs": "down"}}
_ids = iter(range(10**9))


def conv(user: str, arm: str | None, started_at: str, *turns: dict) -> dict:
    record = {
        "conversation_id": f"c-{next(_ids)}",
        "user_id": user,
        "character_id": "pirate-ann",
        "model_version": "gen-0",
        "started_at": started_at,
        "messages": [{"role": "system", "content": "You are Ann."}, *turns],
    }
    if arm is not None:
        record["arm"] = arm
    return record


# --------------------------------------------------------------------------- synthetic traffic


def synth(
    rng: np.random.Generator,
    arms: dict[str, int],
    depth: dict[str, float],
    returns: dict[str, float],
    *,
    spread: float = 0.0,
    pre_users: dict[str, float] | None = None,
    prefix: str = "u",
    start: datetime = START,
    thumbs_down: dict[str, float] | None = None,
) -> tuple[list[dict], list[dict], dict[str, float]]:
    """Traffic with known expected metrics.

    Per arm: users x (1 + Poisson(1)) sessions on their first day, plus one session on a later
    day with probability ``returns[arm] * a_u``; each session has 1 + Poisson(a_u (depth - 1))
    user messages. ``a_u`` is a per-user propensity with mean 1 (lognormal, sd ``spread``), so
    expected depth is ``depth[arm]`` and expected breadth ``returns[arm]``. When ``pre_users``
    is given (share of users with history), a pre-period week with the same propensities but
    no treatment (control's depth/returns) is produced as well. Returns (sessions, pre, a_u).
    """
    control = next(iter(arms))
    sessions: list[dict] = []
    pre: list[dict] = []
    propensity: dict[str, float] = {}
    down = thumbs_down or {}

    def week(
        user: str, arm: str | None, a: float, d: float, r: float, p_down: float, t0: datetime
    ) -> list[dict]:
        first = int(rng.integers(0, 3))
        days = [first] * (1 + int(rng.poisson(1.0)))
        if rng.random() < min(r * a, 1.0):
            days.append(int(rng.integers(first + 1, 7)))
        out = []
        for day in days:
            msgs = 1 + int(rng.poisson(a * (d - 1)))
            turns: list[dict] = []
            for _ in range(msgs):
                turns += [USER, BOT_DOWN if rng.random() < p_down else BOT_UP]
            stamp = (t0 + timedelta(days=day, hours=int(rng.integers(0, 24)))).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append(conv(user, arm, stamp, *turns))
        return out

    for arm, n in arms.items():
        for i in range(n):
            user = f"{prefix}-{arm}-{i}"
            a = float(np.exp(spread * rng.standard_normal() - spread**2 / 2))
            propensity[user] = a
            sessions += week(user, arm, a, depth[arm], returns[arm], down.get(arm, 0.1), start)
            if pre_users is not None and rng.random() < pre_users.get(arm, 1.0):
                pre += week(user, None, a, depth[control], returns[control], 0.1, start - timedelta(days=7))
    return sessions, pre, propensity


def two_arms(
    rng: np.random.Generator, n: int, depth: tuple[float, float], returns: tuple[float, float], **kwargs
) -> tuple[list[dict], list[dict], dict[str, float]]:
    """``synth`` for control and one challenger "B" with ``n`` users each."""
    arms = ("control", "B")
    return synth(rng, dict.fromkeys(arms, n), dict(zip(arms, depth)), dict(zip(arms, returns)), **kwargs)


# --------------------------------------------------------------------------- hand-computed


def hand_traffic() -> list[dict]:
    return [
        # control: u1 returns on day 2; u2 only day 1
        conv("u1", "control", "2026-11-24T10:00:00Z", USER, BOT_UP, USER, BOT_DOWN),
        conv("u1", "control", "2026-11-25T09:00:00Z", USER, BOT),
        conv("u2", "control", "2026-11-24T12:00:00Z", USER, USER, USER, BOT_UP),
        # B: u3 twice on the same day
        conv("u3", "B", "2026-11-24T08:00:00Z", USER, BOT_UP),
        conv("u3", "B", "2026-11-24T20:00:00Z", USER, BOT),
        # u4: 01:10 at +02:00 is 23:10 UTC on the 24th -> same UTC day, not a return
        conv("u4", "B", "2026-11-24T23:30:00Z", USER, BOT_DOWN),
        conv("u4", "B", "2026-11-25T01:10:00+02:00", USER, USER, BOT),
        # u5: a later session without any user message is not engagement
        conv("u5", "B", "2026-11-24T10:00:00Z", USER, BOT),
        conv("u5", "B", "2026-11-26T10:00:00Z", BOT),
        # u6: returns on day 2 (records out of order on purpose)
        conv("u6", "B", "2026-11-25T10:00:00Z", USER, BOT),
        conv("u6", "B", "2026-11-24T10:00:00Z", USER, USER, BOT),
        # u7 seen in both arms: excluded everywhere
        conv("u7", "control", "2026-11-24T10:00:00Z", USER, BOT_DOWN),
        conv("u7", "B", "2026-11-25T10:00:00Z", USER, BOT_DOWN),
        # no arm: skipped and counted
        conv("u8", None, "2026-11-24T10:00:00Z", USER, BOT),
    ]


def test_hand_built_metrics_exact() -> None:
    result = analyze_ab(hand_traffic(), bootstrap=0)
    ctrl, b = result.arms["control"], result.arms["B"]
    assert list(result.arms) == ["control", "B"]
    assert (ctrl.users, ctrl.sessions, ctrl.user_messages, ctrl.returning_users) == (2, 3, 6, 1)
    assert ctrl.breadth == 0.5 and ctrl.depth == 2.0
    assert ctrl.rated_turns == 3
    assert ctrl.thumbs_up_rate == pytest.approx(2 / 3) and ctrl.thumbs_down_rate == pytest.approx(1 / 3)
    assert (b.users, b.sessions, b.user_messages, b.returning_users) == (4, 8, 9, 1)
    assert b.breadth == 0.25 and b.depth == 9 / 8
    assert b.thumbs_up_rate == 0.5 and b.thumbs_down_rate == 0.5
    assert (result.excluded_users, result.excluded_sessions, result.unassigned_sessions) == (1, 2, 1)
    lift = result.challengers["B"]
    assert lift.breadth.lift == pytest.approx(-0.5)
    assert lift.depth.lift == pytest.approx(9 / 8 / 2 - 1)
    assert lift.breadth.boot_ci_lo is None and lift.breadth.cuped is None
    assert result.srm.observed == {"control": 2, "B": 4}


def _delta_var(y: np.ndarray, n: np.ndarray) -> float:
    """Textbook delta-method variance of sum(y)/sum(n) over i.i.d. users."""
    r = y.sum() / n.sum()
    phi = (y - r * n) / n.mean()
    return float(phi.var(ddof=1) / len(y))


def test_delta_variance_matches_textbook_formula() -> None:
    result = analyze_ab(hand_traffic(), bootstrap=0)
    # per-user user messages / sessions, in user order
    yc, nc = np.array([3.0, 3.0]), np.array([2.0, 1.0])
    yt, nt = np.array([2.0, 3.0, 1.0, 3.0]), np.array([2.0, 2.0, 2.0, 2.0])
    rc, rt = yc.sum() / nc.sum(), yt.sum() / nt.sum()
    var = (rt / rc) ** 2 * (_delta_var(yt, nt) / rt**2 + _delta_var(yc, nc) / rc**2)
    depth = result.challengers["B"].depth
    half = 1.959963984540054 * np.sqrt(var)
    assert depth.ci_lo == pytest.approx(depth.lift - half)
    assert depth.ci_hi == pytest.approx(depth.lift + half)
    # breadth: Bernoulli per user; sample variances 0.5 (control) and 0.25 (B)
    breadth = result.challengers["B"].breadth
    var_b = (0.25 / 4) / 0.5**2 + 0.25**2 * (0.5 / 2) / 0.5**4
    assert breadth.ci_hi - breadth.ci_lo == pytest.approx(2 * 1.959963984540054 * np.sqrt(var_b))


# --------------------------------------------------------------------------- planted lift, A/A


def test_planted_depth_lift_is_covered_and_significant() -> None:
    rng = np.random.default_rng(1)
    traffic, _, _ = two_arms(rng, 1500, (5.0, 6.0), (0.4, 0.4), spread=0.5)
    result = analyze_ab(traffic, bootstrap=200, seed=3)
    depth = result.challengers["B"].depth
    assert depth.ci_lo < 0.20 < depth.ci_hi
    assert depth.ci_lo > 0 and depth.p_value < 1e-6
    assert depth.boot_ci_lo is not None and depth.boot_ci_hi is not None
    assert depth.boot_ci_lo < 0.20 < depth.boot_ci_hi and depth.boot_ci_lo > 0
    assert result.challengers["B"].verdict == "ship"
    assert not result.srm.mismatch


def test_minimum_detectable_effect_shrinks_with_the_square_root_of_users() -> None:
    small, _, _ = two_arms(np.random.default_rng(61), 200, (3.0, 3.0), (0.3, 0.3))
    large, _, _ = two_arms(np.random.default_rng(61), 3200, (3.0, 3.0), (0.3, 0.3))
    small_depth = analyze_ab(small, bootstrap=0).challengers["B"].depth
    large_depth = analyze_ab(large, bootstrap=0).challengers["B"].depth
    assert small_depth.mde == pytest.approx(2.8016 * (small_depth.ci_hi - small_depth.ci_lo) / (2 * 1.95996), rel=1e-3)
    assert small_depth.mde / large_depth.mde == pytest.approx(4.0, rel=0.15)


def test_aa_replications_cover_zero_about_95_percent() -> None:
    covered = {"breadth": 0, "depth": 0}
    reps = 40
    for rep in range(reps):
        rng = np.random.default_rng(100 + rep)
        traffic, _, _ = two_arms(rng, 250, (4.0, 4.0), (0.3, 0.3), spread=0.6)
        result = analyze_ab(traffic, bootstrap=0)
        for metric in covered:
            est = getattr(result.challengers["B"], metric)
            covered[metric] += est.ci_lo <= 0.0 <= est.ci_hi
    # nominal 95 %: expect ~38 of 40; a loose bound catches a broken variance (too narrow/wide)
    for metric, hits in covered.items():
        assert 33 <= hits <= reps, (metric, hits)


def test_aa_single_run_covers_zero_and_is_not_shipped() -> None:
    rng = np.random.default_rng(7)
    traffic, _, _ = two_arms(rng, 800, (4.0, 4.0), (0.3, 0.3))
    result = analyze_ab(traffic, bootstrap=200, seed=1)
    ch = result.challengers["B"]
    for est in (ch.breadth, ch.depth):
        assert est.ci_lo < 0 < est.ci_hi
        assert est.boot_ci_lo < 0 < est.boot_ci_hi
    assert ch.verdict == "inconclusive"


def test_delta_ci_agrees_with_bootstrap_on_large_sample() -> None:
    rng = np.random.default_rng(11)
    traffic, _, _ = two_arms(rng, 3000, (4.0, 4.4), (0.35, 0.38), spread=0.7)
    result = analyze_ab(traffic, bootstrap=400, seed=5)
    for est in (result.challengers["B"].breadth, result.challengers["B"].depth):
        width = est.ci_hi - est.ci_lo
        assert est.boot_ci_lo == pytest.approx(est.ci_lo, abs=0.12 * width)
        assert est.boot_ci_hi == pytest.approx(est.ci_hi, abs=0.12 * width)


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(2)
    traffic, _, _ = two_arms(rng, 200, (4.0, 4.0), (0.3, 0.3))
    a = analyze_ab(traffic, bootstrap=100, seed=9).challengers["B"].depth
    b = analyze_ab(traffic, bootstrap=100, seed=9).challengers["B"].depth
    c = analyze_ab(traffic, bootstrap=100, seed=10).challengers["B"].depth
    assert (a.boot_ci_lo, a.boot_ci_hi) == (b.boot_ci_lo, b.boot_ci_hi)
    assert (a.boot_ci_lo, a.boot_ci_hi) != (c.boot_ci_lo, c.boot_ci_hi)


# --------------------------------------------------------------------------- CUPED


def test_cuped_reduces_variance_with_correlated_pre_period() -> None:
    rng = np.random.default_rng(21)
    traffic, pre, _ = two_arms(
        rng, 1000, (5.0, 5.5), (0.3, 0.3), spread=0.8, pre_users={"control": 0.8, "B": 0.8}
    )
    result = analyze_ab(traffic, pre_period=pre, bootstrap=150, seed=2)
    depth = result.challengers["B"].depth
    assert depth.cuped is not None
    assert depth.cuped.theta > 0
    assert depth.cuped.variance_reduction > 0.3
    assert depth.cuped.ci_hi - depth.cuped.ci_lo < depth.ci_hi - depth.ci_lo
    assert depth.cuped.ci_lo < 0.10 < depth.cuped.ci_hi
    assert 0.7 * 2000 < depth.cuped.users_with_history < 0.9 * 2000
    assert depth.cuped.boot_ci_lo < depth.cuped.lift < depth.cuped.boot_ci_hi
    assert depth.primary == "cuped"
    history = result.arms["B"].users_with_history + result.arms["control"].users_with_history
    assert history == depth.cuped.users_with_history
    # breadth covariate (returned in the pre-week) is correlated through the propensity too
    assert result.challengers["B"].breadth.cuped.variance_reduction > 0


def test_cuped_keeps_the_point_estimate_unbiased() -> None:
    raw, adjusted, reductions = [], [], []
    for rep in range(20):
        rng = np.random.default_rng(500 + rep)
        traffic, pre, _ = two_arms(
            rng, 300, (5.0, 6.0), (0.3, 0.3), spread=0.8, pre_users={"control": 0.9, "B": 0.9}
        )
        depth = analyze_ab(traffic, pre_period=pre, bootstrap=0).challengers["B"].depth
        raw.append(depth.lift)
        adjusted.append(depth.cuped.lift)
        reductions.append(depth.cuped.variance_reduction)
    raw_a, adj_a = np.array(raw), np.array(adjusted)
    # same expectation (truth 0.20), smaller spread across replications
    assert adj_a.mean() == pytest.approx(0.20, abs=0.025)
    assert abs(adj_a.mean() - raw_a.mean()) < 2 * raw_a.std(ddof=1) / np.sqrt(len(raw_a))
    assert adj_a.std(ddof=1) < raw_a.std(ddof=1)
    assert np.mean(reductions) > 0.3


def test_cuped_without_history_changes_nothing() -> None:
    rng = np.random.default_rng(4)
    traffic, _, _ = two_arms(rng, 200, (4.0, 4.4), (0.3, 0.3))
    other = [conv("stranger", None, "2026-11-17T10:00:00Z", USER, BOT)]
    depth = analyze_ab(traffic, pre_period=other, bootstrap=0).challengers["B"].depth
    assert depth.cuped.lift == pytest.approx(depth.lift)
    assert depth.cuped.ci_lo == pytest.approx(depth.ci_lo)
    assert depth.cuped.theta == 0 and depth.cuped.users_with_history == 0


# --------------------------------------------------------------------------- exclusion, SRM


def test_user_in_two_arms_is_excluded() -> None:
    records = [
        conv("a", "control", "2026-11-24T10:00:00Z", USER, BOT),
        conv("b", "control", "2026-11-24T10:00:00Z", USER, USER, BOT),
        conv("c", "B", "2026-11-24T10:00:00Z", USER, BOT),
        conv("both", "control", "2026-11-24T10:00:00Z", *([USER] * 50)),
        conv("both", "B", "2026-11-25T10:00:00Z", *([USER] * 50)),
    ]
    result = analyze_ab(records, bootstrap=0)
    assert result.excluded_users == 1 and result.excluded_sessions == 2
    assert result.arms["control"].users == 2 and result.arms["B"].users == 1
    assert result.arms["control"].depth == 1.5 and result.arms["B"].depth == 1.0


def _users(n_by_arm: dict[str, int]) -> list[dict]:
    return [
        conv(f"{arm}-{i}", arm, "2026-11-24T10:00:00Z", USER, BOT)
        for arm, n in n_by_arm.items()
        for i in range(n)
    ]


def test_srm_detects_60_40_split() -> None:
    result = analyze_ab(_users({"control": 1200, "B": 800}), bootstrap=0)
    assert result.srm.mismatch and result.srm.p_value < 1e-10
    assert result.srm.chi2 == pytest.approx(80.0)  # (200^2 + 200^2) / 1000
    assert result.challengers["B"].verdict == "inconclusive"
    assert "sample ratio mismatch" in result.challengers["B"].reasons[0]
    planned = analyze_ab(
        _users({"control": 1200, "B": 800}), bootstrap=0, expected_split={"control": 3, "B": 2}
    )
    assert not planned.srm.mismatch and planned.srm.p_value == pytest.approx(1.0)


def test_srm_passes_on_balanced_split_and_rejects_unknown_arm() -> None:
    result = analyze_ab(_users({"control": 1010, "B": 990}), bootstrap=0)
    assert not result.srm.mismatch and result.srm.p_value > 0.5
    with pytest.raises(ValueError, match="expected_split"):
        analyze_ab(_users({"control": 10, "B": 10}), bootstrap=0, expected_split={"control": 1})
    with pytest.raises(ValueError, match="control arm"):
        analyze_ab(_users({"A": 10, "B": 10}), bootstrap=0)


# --------------------------------------------------------------------------- guardrails, verdict


def test_thumbs_down_guardrail_blocks_an_engaging_challenger() -> None:
    rng = np.random.default_rng(31)
    traffic, _, _ = two_arms(
        rng, 1000, (5.0, 6.0), (0.3, 0.3), thumbs_down={"control": 0.10, "B": 0.16}
    )
    result = analyze_ab(traffic, bootstrap=0)
    ch = result.challengers["B"]
    assert ch.depth.ci_lo > 0
    down = next(g for g in ch.guardrails if g.metric == "thumbs_down_rate")
    assert down.breached and down.diff == pytest.approx(0.06, abs=0.015)
    assert ch.verdict == "no-ship"
    # a wide enough margin tolerates it
    lenient = analyze_ab(traffic, bootstrap=0, guardrail_margin=0.10).challengers["B"]
    assert not any(g.breached for g in lenient.guardrails) and lenient.verdict == "ship"


def test_violation_callback_guardrail() -> None:
    rng = np.random.default_rng(41)
    traffic, _, _ = two_arms(rng, 600, (4.0, 4.0), (0.3, 0.3))
    flags = np.random.default_rng(0)

    def violation_of(record: dict) -> tuple[int, int] | None:
        if record["conversation_id"].endswith("7"):
            return None  # checker not applicable
        rate = 0.30 if record["arm"] == "B" else 0.10
        return int(flags.random() < rate), 1

    result = analyze_ab(traffic, bootstrap=0, violation_of=violation_of)
    assert result.arms["control"].violation_rate == pytest.approx(0.10, abs=0.02)
    assert result.arms["B"].violation_rate == pytest.approx(0.30, abs=0.03)
    assert 0 < result.arms["B"].violation_checks < result.arms["B"].sessions
    viol = next(g for g in result.challengers["B"].guardrails if g.metric == "violation_rate")
    assert viol.breached and result.challengers["B"].verdict == "no-ship"
    without = analyze_ab(traffic, bootstrap=0)
    assert without.arms["B"].violation_rate is None
    assert all(g.metric != "violation_rate" for g in without.challengers["B"].guardrails)


def test_significant_regression_is_no_ship() -> None:
    rng = np.random.default_rng(51)
    traffic, _, _ = two_arms(rng, 1500, (5.0, 4.0), (0.3, 0.3))
    ch = analyze_ab(traffic, bootstrap=0).challengers["B"]
    assert ch.depth.ci_hi < 0 and ch.verdict == "no-ship"


def small_breadth_gap() -> list[dict]:
    """27 control users (8 come back the next day) vs 21 challenger users (2 come back)."""
    traffic = []
    for arm, users, returning in (("control", 27, 8), ("B", 21, 2)):
        for i in range(users):
            traffic.append(conv(f"{arm}-{i}", arm, "2026-11-24T10:00:00Z", USER, BOT, USER, BOT))
            if i < returning:
                traffic.append(conv(f"{arm}-{i}", arm, "2026-11-25T10:00:00Z", USER, BOT))
    return traffic


def test_small_arm_gap_is_not_called_significant_unless_the_bootstrap_agrees() -> None:
    """8/27 vs 2/21 returning (Fisher's exact p = 0.15): the delta CI alone excludes zero."""
    delta_only = analyze_ab(small_breadth_gap(), bootstrap=0).challengers["B"]
    assert delta_only.breadth.ci_hi < 0 and delta_only.verdict == "no-ship"
    checked = analyze_ab(small_breadth_gap(), bootstrap=2000, seed=0).challengers["B"]
    assert checked.breadth.ci_hi < 0 and checked.breadth.boot_ci_hi >= 0
    assert checked.breadth.direction == 0 and checked.verdict == "inconclusive"
    assert any("bootstrap CI" in reason for reason in checked.reasons)


def test_several_challengers_each_against_control() -> None:
    rng = np.random.default_rng(61)
    traffic, _, _ = synth(
        rng,
        {"base": 600, "B": 600, "C": 600},
        {"base": 4.0, "B": 5.0, "C": 4.0},
        {"base": 0.3, "B": 0.3, "C": 0.3},
    )
    result = analyze_ab(traffic, control_arm="base", bootstrap=50)
    assert list(result.arms) == ["base", "B", "C"] and set(result.challengers) == {"B", "C"}
    assert result.challengers["B"].depth.ci_lo > 0
    assert result.challengers["C"].depth.ci_lo < 0 < result.challengers["C"].depth.ci_hi


# --------------------------------------------------------------------------- outputs


@pytest.fixture(scope="module")
def small_result() -> ABResult:
    rng = np.random.default_rng(71)
    traffic, pre, _ = two_arms(
        rng, 150, (4.0, 4.8), (0.3, 0.3), spread=0.5, pre_users={"control": 0.7, "B": 0.7}
    )
    return analyze_ab(traffic, pre_period=pre, bootstrap=50, violation_of=lambda r: (0, 1))


def test_to_dict_is_json_safe(small_result: ABResult) -> None:
    data = small_result.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["control_arm"] == "control"
    assert back["arms"]["B"]["users"] == 150
    depth = back["challengers"]["B"]["depth"]
    assert {"lift", "ci_lo", "ci_hi", "p_value", "boot_ci_lo", "boot_ci_hi", "cuped", "primary"} <= set(depth)
    assert depth["cuped"]["variance_reduction"] is not None
    assert back["challengers"]["B"]["verdict"] in {"ship", "no-ship", "inconclusive"}
    # violation rate is 0 in both arms: zero variance -> p-value NaN -> None, not breached
    viol = next(g for g in back["challengers"]["B"]["guardrails"] if g["metric"] == "violation_rate")
    assert viol["p_value"] is None and viol["diff"] == 0 and viol["breached"] is False


def test_render_table(small_result: ABResult) -> None:
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    render_ab(small_result, console)
    text = console.export_text()
    for needle in ("Arms", "Relative lift vs control", "Guardrails", "breadth", "depth", "SRM", "B:"):
        assert needle in text
    assert small_result.challengers["B"].verdict in text


def test_plot_writes_png(small_result: ABResult, tmp_path) -> None:
    path = plot_ab(small_result, tmp_path / "out" / "lifts.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
