"""Gates: a deliberately bad child is stopped with reasons, a good one passes; each gate's edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from characterflywheel.characters import character_by_id
from characterflywheel.evaluate.gates import apply_gates
from characterflywheel.evaluate.offline import evaluate_child
from characterflywheel.evaluate.settings import EvaluateConfig
from characterflywheel.evaluate.stats import Estimate

N = 60
SETTINGS = EvaluateConfig(bootstrap=300)
CARDS = [character_by_id("master-kaito"), character_by_id("chef-gordo")]  # no emoji/lists, <= 40/60 words, ...


class QualityJudge:
    """P(a beats b) = sigmoid(q_a - q_b); the pointwise reward is q."""

    def __init__(self, quality: dict[str, float]) -> None:
        self.quality = quality
        self.pointwise = self

    def score(self, prompts, replies) -> np.ndarray:
        return np.array([self.quality[r] for r in replies])

    def win_rate(self, prompts, replies_a, replies_b) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.score(prompts, replies_a) - self.score(prompts, replies_b))))


def _records() -> list[dict]:
    return [{"prompt_id": f"p{i}", "character_id": CARDS[i % 2].id,
             "prompt": [{"role": "user", "content": f"what do you think about thing {i}"}]} for i in range(N)]


def _parent(rng: np.random.Generator) -> tuple[list[str], dict[str, float]]:
    replies = [f"A calm answer about thing {i}." for i in range(N)]
    return replies, {r: float(q) for r, q in zip(replies, rng.normal(0.0, 1.0, N))}


def _good_child(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    parent, quality = _parent(rng)
    child = [f"A thoughtful answer about thing {i}" + " indeed" * int(rng.integers(0, 5)) + "." for i in range(N)]
    quality.update({r: float(q) for r, q in zip(child, rng.normal(0.8, 1.0, N))})
    return evaluate_child(_records(), child, parent, judge=QualityJudge(quality), characters=CARDS,
                          settings=SETTINGS).to_dict()


def _bad_child(seed: int = 0) -> dict:
    """Loses to the parent, breaks the no-emoji rule, its reward is driven by emoji count, and its
    replies are too short to be a character's (four words)."""
    rng = np.random.default_rng(seed)
    parent, quality = _parent(rng)
    emoji = rng.integers(0, 4, N)
    child = [f"Answer about thing {i}! " + "😎" * int(k) for i, k in enumerate(emoji)]
    quality.update({r: float(-1.0 + 0.4 * k + rng.normal(0, 0.1)) for r, k in zip(child, emoji)})
    return evaluate_child(_records(), child, parent, judge=QualityJudge(quality), characters=CARDS,
                          settings=SETTINGS).to_dict()


def _by_name(decision) -> dict:
    return {check.name: check for check in decision.checks}


def test_a_good_child_passes_every_gate() -> None:
    decision = apply_gates(_good_child(), settings=SETTINGS)
    assert decision.passed, decision.summary()
    assert decision.reasons == []
    checks = _by_name(decision)
    assert set(checks) == {"win_rate_vs_parent.reward_model", "violation_rate_not_worse",
                           "instruction_following_not_lower", "broken_replies_not_more", "no_style_artifact",
                           "user_signal_win_rate"}
    assert checks["win_rate_vs_parent.reward_model"].value > 0.5
    assert checks["user_signal_win_rate"].skipped
    assert all(check.reason for check in decision.checks)


def test_a_deliberately_bad_child_is_stopped_with_reasons() -> None:
    report = _bad_child()
    decision = apply_gates(report, settings=SETTINGS, user_signal_win_rate=0.72)
    assert not decision.passed
    checks = _by_name(decision)
    failed = {check.name for check in decision.failed}
    assert failed == {"win_rate_vs_parent.reward_model", "violation_rate_not_worse",
                      "instruction_following_not_lower", "broken_replies_not_more", "no_style_artifact",
                      "user_signal_win_rate"}
    assert checks["win_rate_vs_parent.reward_model"].value < 0.5
    assert "no significant win" in checks["win_rate_vs_parent.reward_model"].reason
    assert "worse than the parent" in checks["violation_rate_not_worse"].reason
    assert "emoji_count" in checks["no_style_artifact"].reason
    assert "hacking the user-signal proxy" in checks["user_signal_win_rate"].reason
    assert len(decision.reasons) == 6 and decision.summary().startswith("failed: ")
    payload = json.loads(json.dumps(decision.to_dict()))
    assert payload["passed"] is False and len(payload["checks"]) == 6


def test_a_child_with_broken_weights_is_stopped_even_when_the_judge_sees_nothing() -> None:
    """What two SFT steps at learning rate 0.05 write ("(   (  world"): a judge at chance (win rate 0.5
    every prompt) passes it on the win rate, the broken-reply gate does not; a report from before the
    figure existed skips the check rather than failing every old child."""
    parent = [f"A calm answer about thing {i}, with a question back?" for i in range(N)]
    child = ["(   (  world" if i % 4 else "A calm answer about a thing, with a question back?" for i in range(N)]
    report = evaluate_child(_records(), child, parent, judge=QualityJudge({**dict.fromkeys(parent, 0.0),
                                                                           **dict.fromkeys(child, 0.0)}),
                            characters=CARDS, settings=SETTINGS).to_dict()
    assert report["broken_reply_rate"]["child"]["value"] == pytest.approx(0.75)
    assert report["broken_reply_rate"]["parent"]["value"] == 0.0
    decision = apply_gates(report, settings=EvaluateConfig(win_rate_test="point", min_win_rate_vs_parent=0.49))
    checks = _by_name(decision)
    assert not decision.passed and [check.name for check in decision.failed] == ["broken_replies_not_more"]
    assert "child - parent broken-reply rate = +0.750" in checks["broken_replies_not_more"].reason
    older = {key: value for key, value in report.items() if key != "broken_reply_rate"}
    assert _by_name(apply_gates(older, settings=SETTINGS))["broken_replies_not_more"].skipped


def _marginal(value: float, lo: float, hi: float) -> dict:
    return {"win_rate_vs_parent": {"reward_model": {"value": value, "lo": lo, "hi": hi, "n": 40}},
            "violation_rate": {"child_minus_parent": {"value": 0.0, "lo": -0.05, "hi": 0.05, "n": 80}},
            "instruction_following": {"child_minus_parent": {"value": 0.01, "lo": -0.1, "hi": 0.12, "n": 80}},
            "style": {"flagged": [], "threshold": 0.2, "features": {}}}


def test_the_win_rate_test_decides_a_marginal_win() -> None:
    report = _marginal(0.56, 0.47, 0.65)
    strict = apply_gates(report, settings=EvaluateConfig())
    assert not strict.passed
    assert "CI lower bound 0.470 is not above 0.500" in strict.reasons[0]
    lenient = apply_gates(report, settings=EvaluateConfig(win_rate_test="point"))
    assert lenient.passed, lenient.summary()


def test_non_inferiority_passes_a_marginal_loss_and_stops_a_significant_one() -> None:
    settings = EvaluateConfig(win_rate_test="non_inferiority")
    marginal = apply_gates(_marginal(0.47, 0.41, 0.53), settings=settings)
    assert marginal.passed, marginal.summary()
    assert "not significantly worse" in _by_name(marginal)["win_rate_vs_parent.reward_model"].reason
    assert not apply_gates(_marginal(0.47, 0.41, 0.53), settings=EvaluateConfig(win_rate_test="point")).passed
    significant = apply_gates(_marginal(0.38, 0.30, 0.46), settings=settings)
    assert not significant.passed
    assert "significantly worse than the parent" in significant.reasons[0]


def _evidence(reward_model_z: float, user_signal_z: float | None) -> dict:
    present = [z for z in (reward_model_z, user_signal_z) if z is not None]
    return {"reward_model_z": reward_model_z, "user_signal_z": user_signal_z,
            "combined_z": sum(present) / np.sqrt(len(present)), "n": 32}


def test_the_demo_gates_on_the_evidence_of_both_scorers() -> None:
    """Run five8's generation 2 (reward models 0.504, z +0.2; user signal z -3.3; truth -0.041) passed
    the demo's old point gate and its generation 3 (0.495, z -0.3; +1.8; truth +0.050) was stopped by
    it: the evidence gate decides both the other way round."""
    from characterflywheel.config import load_config

    demo = load_config(preset="demo").evaluate
    loser = dict(_marginal(0.504, 0.475, 0.534), evidence_vs_parent=_evidence(0.2, -3.3))
    stopped = apply_gates(loser, settings=demo)
    assert not stopped.passed and [check.name for check in stopped.failed] == ["evidence_vs_parent"]
    assert "combined z -2.19 (reward models z +0.20, user signal z -3.30; n=32) is not above 0.00" in stopped.reasons[0]
    weighted = dict(loser, evidence_vs_parent=_evidence(0.2, -3.3) | {"user_signal_weight": 0.18})
    assert "user signal z -3.30 weighted 0.18; n=32" in apply_gates(weighted, settings=demo).reasons[0]
    climber = dict(_marginal(0.495, 0.458, 0.533), evidence_vs_parent=_evidence(-0.3, 1.8))
    assert apply_gates(climber, settings=demo).passed
    assert not apply_gates(_marginal(0.539, 0.476, 0.601), settings=demo).passed  # no evidence measured: fails
    bad = _by_name(apply_gates(_bad_child(), settings=demo))["evidence_vs_parent"]
    assert not bad.passed and "user signal" not in bad.reason  # no user-signal model: the reward models' z alone


def test_a_steerability_step_passes_the_evidence_gate_without_an_engagement_gain() -> None:
    """five10's generation 3 (truth: P(continue) +0.000, following +8 points over its parent) had an
    evidence z of -1.31 and was stopped. On the demo preset a child whose engagement is not
    significantly worse passes when its following rose significantly; neither half alone passes."""
    from characterflywheel.config import load_config

    demo = load_config(preset="demo").evaluate
    assert demo.steerability_step_min_evidence_z == pytest.approx(-1.64)

    def child(user_signal_z: float, following: tuple[float, float, float]) -> dict:
        report = dict(_marginal(0.49, 0.45, 0.53), evidence_vs_parent=_evidence(-0.3, user_signal_z))
        value, lo, hi = following
        report["instruction_following"] = {"child_minus_parent": {"value": value, "lo": lo, "hi": hi, "n": 500}}
        return report

    steerable = _by_name(apply_gates(child(-1.5, (0.09, 0.03, 0.15)), settings=demo))["evidence_vs_parent"]
    assert steerable.passed and "passes as a steerability step" in steerable.reason
    assert "instruction following child - parent +0.090 (CI [0.030, 0.150], n=500)" in steerable.reason
    unsure = _by_name(apply_gates(child(-1.5, (0.09, -0.01, 0.19)), settings=demo))["evidence_vs_parent"]
    assert not unsure.passed and "nor a steerability step" in unsure.reason
    losing = _by_name(apply_gates(child(-3.0, (0.20, 0.12, 0.28)), settings=demo))["evidence_vs_parent"]
    assert not losing.passed and "below the steerability step's -1.64 too" in losing.reason
    engagement_only = demo.model_copy(update={"steerability_step_min_evidence_z": None})
    assert not apply_gates(child(-1.5, (0.09, 0.03, 0.15)), settings=engagement_only).passed


def test_non_inferiority_still_stops_the_deliberately_bad_child() -> None:
    decision = apply_gates(_bad_child(), settings=EvaluateConfig(win_rate_test="non_inferiority"))
    check = _by_name(decision)["win_rate_vs_parent.reward_model"]
    assert not check.passed and "significantly worse than the parent" in check.reason


def test_user_signal_divergence_reads_the_reward_models_by_the_same_test() -> None:
    """A user-signal win rate past 0.65 with the reward models at 0.47 [0.41, 0.53]: the point
    estimate says the reward models prefer the parent (divergence: fail); non-inferiority says they
    do not significantly (no divergence: pass)."""
    report = {**_marginal(0.47, 0.41, 0.53), "user_signal_win_rate_vs_parent": 0.70}
    point = _by_name(apply_gates(report, settings=EvaluateConfig(win_rate_test="point")))["user_signal_win_rate"]
    assert not point.passed and "hacking" in point.reason
    lenient = EvaluateConfig(win_rate_test="non_inferiority")
    assert _by_name(apply_gates(report, settings=lenient))["user_signal_win_rate"].passed
    report["win_rate_vs_parent"]["reward_model"] = {"value": 0.38, "lo": 0.30, "hi": 0.46, "n": 40}
    assert not _by_name(apply_gates(report, settings=lenient))["user_signal_win_rate"].passed


def test_guardrail_tolerance_and_significance() -> None:
    def report(violation: dict) -> dict:
        return {"win_rate_vs_parent": {"reward_model": {"value": 0.7, "lo": 0.6, "hi": 0.8, "n": 50}},
                "violation_rate": {"child_minus_parent": violation},
                "instruction_following": {"child_minus_parent": {"value": 0.0, "lo": -0.1, "hi": 0.1, "n": 50}},
                "style": {"flagged": []}}

    slightly_worse = {"value": 0.04, "lo": -0.02, "hi": 0.1, "n": 100}
    point_estimate = EvaluateConfig(guardrails_need_significance=False)
    point = _by_name(apply_gates(report(slightly_worse), settings=point_estimate))["violation_rate_not_worse"]
    assert not point.passed and point.threshold == 0.02
    significance = EvaluateConfig()  # the default: only a significant worsening fails
    assert _by_name(apply_gates(report(slightly_worse), settings=significance))["violation_rate_not_worse"].passed
    clearly_worse = {"value": 0.2, "lo": 0.1, "hi": 0.3, "n": 100}
    assert not _by_name(apply_gates(report(clearly_worse), settings=significance))["violation_rate_not_worse"].passed
    tolerant = EvaluateConfig(max_violation_increase=0.05, guardrails_need_significance=False)
    assert _by_name(apply_gates(report(slightly_worse), settings=tolerant))["violation_rate_not_worse"].passed
    no_checks = _by_name(apply_gates(report({"value": None, "lo": None, "hi": None, "n": 0})))
    assert no_checks["violation_rate_not_worse"].passed and no_checks["violation_rate_not_worse"].skipped


def test_missing_figures_and_user_signal_inputs() -> None:
    empty = apply_gates({})
    checks = _by_name(empty)
    assert not empty.passed
    assert "not measured" in checks["win_rate_vs_parent.reward_model"].reason
    assert not checks["no_style_artifact"].passed
    good = _good_child(seed=1)
    assert apply_gates(good, user_signal_win_rate=0.6).passed
    figure = Estimate(0.66, 0.6, 0.72, 60).to_dict()
    absolute = EvaluateConfig(user_signal_gate="absolute")
    assert not _by_name(apply_gates(good, settings=absolute, user_signal_win_rate=figure))["user_signal_win_rate"].passed
    assert not _by_name(apply_gates(dict(good, user_signal_win_rate_vs_parent=figure), settings=absolute))[
        "user_signal_win_rate"].passed
    # divergence (default): a child the reward models prefer too is no sign of hacking the user signal
    agreeing = _by_name(apply_gates(good, user_signal_win_rate=figure))["user_signal_win_rate"]
    assert good["win_rate_vs_parent"]["reward_model"]["value"] > 0.5
    assert agreeing.passed and "no divergence" in agreeing.reason
    # annotators gated only when asked for; absent annotations are skipped, not failed
    both = EvaluateConfig(gated_win_rate_judges=["reward_model", "annotators"])
    annotators = _by_name(apply_gates(good, settings=both))["win_rate_vs_parent.annotators"]
    assert annotators.passed and annotators.skipped
    # the style gate can be turned off; the reference gate on
    bad_style = dict(good, style={"flagged": ["emoji_count"], "threshold": 0.2,
                                  "features": {"emoji_count": {"share": 0.5}}})
    assert not apply_gates(bad_style).passed
    assert apply_gates(bad_style, settings=EvaluateConfig(forbid_style_artifacts=False)).passed
    with_reference = _by_name(apply_gates(good, settings=EvaluateConfig(min_win_rate_vs_reference=0.4)))
    assert not with_reference["win_rate_vs_reference.reward_model"].passed  # no reference was evaluated
    with pytest.raises(TypeError, match="offline_report_dict"):
        apply_gates([1, 2])  # type: ignore[arg-type]


def test_an_echo_of_the_conversations_earlier_reply_counts_as_broken() -> None:
    """A child that says its first reply again on the second turn: fine as text, broken in the
    conversation (what `five13`'s children learned); the parent answers afresh."""
    records = _records()
    for index, record in enumerate(records):
        first_reply = f"Hello! Shall we talk about thing {index} today, friend?"
        record["prompt"] = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": first_reply},
                            *record["prompt"]]
    child = [f"Hello! Shall we talk about thing {i} today, friend?" for i in range(N)]
    parent = [f"A calm answer about thing {i}, with a question back?" for i in range(N)]
    report = evaluate_child(records, child, parent, judge=QualityJudge(dict.fromkeys(child + parent, 0.0)),
                            characters=CARDS, settings=SETTINGS).to_dict()
    assert report["broken_reply_rate"]["child"]["value"] == 1.0
    assert report["broken_reply_rate"]["parent"]["value"] == 0.0
