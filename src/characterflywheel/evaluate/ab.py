"""Read out an online A/B test of character-chat models: engagement breadth and depth.

The paper judges every generation by a 7-day A/B test on two engagement metrics, with
guardrails on user feedback and instruction violations. This module turns served traffic (one
conversation = one session per record, the project's schema) into that read-out.

Unit of randomisation and of analysis: the **user**. Every metric is a ratio of per-user sums
``R = sum_u Y_u / sum_u N_u`` over the users of an arm, so its variance is over users, not
sessions or turns (sessions of one user are correlated).

Metrics (days are UTC calendar days of ``started_at``):

* **engagement breadth** -- share of the arm's users who come back and engage (a session with
  at least one user message) on a later day than their first day in the window.
  ``Y_u = 1`` if they did, ``N_u = 1``.
* **engagement depth** -- user messages per session, aggregated per user first (``Y_u`` = the
  user's user messages, ``N_u`` = the user's sessions), then the ratio of sums over users.
* **thumbs-down / thumbs-up rate** (guardrails) -- share of the rated assistant turns (thumbs
  "up" or "down") that are down / up; ``Y_u`` = downs (ups), ``N_u`` = rated turns.
* **violation rate** (guardrail, optional) -- ``violation_of(record) -> (violations, checks)``
  summed per user; ``Y_u`` = violations, ``N_u`` = checks.

Statistics:

* Users seen in two arms (broken sticky assignment) are dropped from every arm and counted.
  Sample-ratio mismatch (SRM): chi-square goodness of fit of users per arm against the expected
  split (equal by default). A mismatch (p < ``srm_alpha``) makes every verdict inconclusive.
* Relative lift ``L = R_t / R_c - 1`` of each challenger over control. Delta method: the
  linearised per-user value ``phi_u = (Y_u - R N_u) / mean(N)`` gives
  ``Var(R) = var(phi) / n`` (this carries the covariance of numerator and denominator), and
  ``Var(L) = Var(R_t) / R_c^2 + R_t^2 Var(R_c) / R_c^4`` (arms independent). Normal CI and
  two-sided z-test p-value on ``L``.
* Bootstrap over users: users are resampled with replacement within each arm (seeded), ``L``
  recomputed; percentile CI.
* CUPED: the covariate ``X_u`` is the user's value of the same metric in the pre-period
  (breadth: returned in the pre window; depth: their pre-period messages per session). Users
  without pre-period history get ``X_u = mean(X)`` of the users with history, i.e. no
  adjustment. ``theta = cov(phi, X) / var(X)`` pooled within arms over control and challenger;
  ``R_adj = R - theta (mean_arm(X) - mean_pooled(X))`` and ``Var(R_adj) = var(phi - theta X)/n``
  (Deng et al. 2013, with the delta-method linearisation for ratio metrics). The bootstrap
  re-estimates ``theta`` in every resample. Variance reduction = ``1 - Var(L_adj) / Var(L)``.
* Minimum detectable effect per lift: ``(z_{1-alpha/2} + z_{0.8}) * SE(L)`` of the primary
  estimate, the smallest relative lift this many users resolve with 80 % power.
* Guardrails are compared on the absolute difference of rates (``R_t - R_c``, delta-method CI):
  a guardrail is *breached* when the challenger is significantly worse by more than
  ``guardrail_margin`` (thumbs-down / violations: CI lower bound > margin; thumbs-up: CI upper
  bound < -margin). Absolute differences keep the check defined when control has a zero rate.
* Verdict per challenger, on the primary CI (CUPED when a pre-period is given, delta otherwise):
  "no-ship" if breadth or depth is significantly negative or a guardrail is breached; else
  "ship" if breadth or depth is significantly positive; else "inconclusive". With bootstrap
  resamples a lift is significant only when the bootstrap CI excludes zero on the same side
  (the normal approximation is too narrow for arms of tens of users with a few returning).

What the libraries cover and what is written here: scipy supplies the distributions (normal
quantiles and tail probabilities) and the chi-square goodness-of-fit test for SRM. Neither scipy
nor statsmodels offers a delta-method variance for a *ratio of ratio metrics* clustered by user,
CUPED, or a bootstrap that resamples users inside each arm and recomputes ratio metrics and the
CUPED theta per resample, so those are written here, all from per-user sufficient statistics
(sums of Y, N, X and their cross-products): the observed estimate and every bootstrap resample go
through the same function, and resampling is a matrix product of multiplicity weights with the
per-user columns (``evaluate.ab_stats``). statsmodels is therefore not needed. numpy does the
arithmetic; ``evaluate.ab_render`` prints the tables (rich) and draws the plot (matplotlib).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
from scipy import stats

from characterflywheel.evaluate.ab_stats import estimates, resample_sums, unpack

__all__ = [
    "ABResult",
    "ArmSummary",
    "ChallengerResult",
    "CupedEstimate",
    "GuardrailCheck",
    "LiftEstimate",
    "SRMCheck",
    "ViolationFn",
    "analyze_ab",
    "change",
    "lift",
]

ViolationFn = Callable[[Mapping[str, Any]], "tuple[int, int] | None"]
"""Caller-supplied instruction checker: ``record -> (violations, checks)`` or None (n/a)."""

SHIP, NO_SHIP, INCONCLUSIVE = "ship", "no-ship", "inconclusive"
ENGAGEMENT_METRICS = ("breadth", "depth")

# metric -> (numerator column, denominator column, CUPED covariate column or None)
_METRICS: dict[str, tuple[str, str, str | None]] = {
    "breadth": ("returned", "ones", "x_breadth"),
    "depth": ("user_messages", "sessions", "x_depth"),
    "thumbs_down_rate": ("thumbs_down", "rated", None),
    "thumbs_up_rate": ("thumbs_up", "rated", None),
    "violation_rate": ("violations", "checks", None),
}
# guardrail metric -> higher is worse
_GUARDRAILS: dict[str, bool] = {
    "thumbs_down_rate": True,
    "thumbs_up_rate": False,
    "violation_rate": True,
}
POWER = 0.8  # for the minimum detectable effect reported with each lift


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ArmSummary:
    """Per-arm totals and point estimates."""

    arm: str
    users: int
    sessions: int
    user_messages: int
    returning_users: int
    breadth: float
    depth: float
    rated_turns: int
    thumbs_up_rate: float
    thumbs_down_rate: float
    violation_checks: int
    violation_rate: float | None
    users_with_history: int | None


@dataclass(frozen=True)
class CupedEstimate:
    """CUPED-adjusted relative lift."""

    lift: float
    ci_lo: float
    ci_hi: float
    p_value: float
    theta: float
    variance_reduction: float
    boot_ci_lo: float | None
    boot_ci_hi: float | None
    users_with_history: int


@dataclass(frozen=True)
class LiftEstimate:
    """Relative lift of a challenger over control on one engagement metric."""

    metric: str
    control: float
    challenger: float
    lift: float
    ci_lo: float
    ci_hi: float
    p_value: float
    boot_ci_lo: float | None
    boot_ci_hi: float | None
    cuped: CupedEstimate | None = None
    mde: float | None = None  # smallest |lift| the primary estimate detects with 80 % power

    @property
    def primary(self) -> str:
        """Which estimate the verdict uses: "cuped" when available, else "delta"."""
        if self.cuped is not None and finite(self.cuped.ci_lo, self.cuped.ci_hi):
            return "cuped"
        return "delta"

    @property
    def primary_estimate(self) -> LiftEstimate | CupedEstimate:
        return self.cuped if self.primary == "cuped" and self.cuped is not None else self

    @property
    def primary_ci(self) -> tuple[float, float]:
        return self.primary_estimate.ci_lo, self.primary_estimate.ci_hi

    @property
    def primary_lift(self) -> float:
        return self.primary_estimate.lift

    @property
    def primary_boot_ci(self) -> tuple[float | None, float | None]:
        return self.primary_estimate.boot_ci_lo, self.primary_estimate.boot_ci_hi

    @property
    def direction(self) -> int:
        """+1 (-1) when the lift is significantly positive (negative), else 0.

        With bootstrap resamples, the normal-approximation CI and the bootstrap percentile CI must
        both exclude zero on the same side. The delta method alone is not enough at small arms: on
        27 vs 21 users with 8 and 2 returning, it called the breadth drop significant
        ([-115 %, -20 %]) where the bootstrap gave [-100 %, +3 %] and Fisher's exact test p = 0.15.
        """
        lo, hi = self.primary_ci
        boot_lo, boot_hi = self.primary_boot_ci
        checked = finite(boot_lo, boot_hi)
        if lo > 0 and (not checked or boot_lo > 0):  # type: ignore[operator]
            return 1
        if hi < 0 and (not checked or boot_hi < 0):  # type: ignore[operator]
            return -1
        return 0


@dataclass(frozen=True)
class GuardrailCheck:
    """Absolute difference of a guardrail rate (challenger - control)."""

    metric: str
    higher_is_worse: bool
    control: float
    challenger: float
    diff: float
    ci_lo: float
    ci_hi: float
    p_value: float
    margin: float
    evaluated: bool
    breached: bool


@dataclass(frozen=True)
class ChallengerResult:
    arm: str
    breadth: LiftEstimate
    depth: LiftEstimate
    guardrails: tuple[GuardrailCheck, ...]
    verdict: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class SRMCheck:
    """Chi-square test of users per arm against the expected split."""

    observed: dict[str, int]
    expected_share: dict[str, float]
    chi2: float
    p_value: float
    alpha: float
    mismatch: bool


@dataclass(frozen=True)
class ABResult:
    control_arm: str
    confidence: float
    arms: dict[str, ArmSummary]
    challengers: dict[str, ChallengerResult]
    srm: SRMCheck
    excluded_users: int
    excluded_sessions: int
    unassigned_sessions: int
    bootstrap: int
    seed: int
    cuped: bool
    guardrail_margin: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe nested dict (NaN/inf become None)."""
        return _jsonable(self)


# --------------------------------------------------------------------------- reading


@dataclass
class _UserAcc:
    arms: set[str] = field(default_factory=set)
    first_day: date | None = None
    engaged_days: set[date] = field(default_factory=set)
    sessions: int = 0
    user_messages: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    violations: int = 0
    checks: int = 0

    @property
    def returned(self) -> bool:
        return self.first_day is not None and any(d > self.first_day for d in self.engaged_days)


def _utc_day(value: Any) -> date:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise TypeError(f"started_at must be an ISO 8601 string or datetime, got {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).date()


def _count_turns(messages: Sequence[Mapping[str, Any]]) -> tuple[int, int, int]:
    """(user messages, thumbs up, thumbs down) of one conversation."""
    users = ups = downs = 0
    for message in messages:
        role = message.get("role")
        if role == "user":
            users += 1
        elif role == "assistant":
            thumbs = (message.get("signals") or {}).get("thumbs")
            ups += thumbs == "up"
            downs += thumbs == "down"
    return users, ups, downs


def _accumulate(
    records: Iterable[Mapping[str, Any]],
    violation_of: ViolationFn | None,
    need_arm: bool,
) -> tuple[dict[str, _UserAcc], int]:
    """Per-user accumulators; returns them and the number of records without an arm."""
    users: dict[str, _UserAcc] = {}
    unassigned = 0
    for record in records:
        arm = record.get("arm")
        if need_arm and not arm:
            unassigned += 1
            continue
        acc = users.setdefault(str(record["user_id"]), _UserAcc())
        if arm:
            acc.arms.add(str(arm))
        day = _utc_day(record["started_at"])
        acc.first_day = day if acc.first_day is None else min(acc.first_day, day)
        n_user, ups, downs = _count_turns(record.get("messages") or ())
        acc.sessions += 1
        acc.user_messages += n_user
        acc.thumbs_up += ups
        acc.thumbs_down += downs
        if n_user:
            acc.engaged_days.add(day)
        if violation_of is not None:
            found = violation_of(record)
            if found is not None:
                acc.violations += int(found[0])
                acc.checks += int(found[1])
    return users, unassigned


@dataclass(frozen=True)
class _Arm:
    """Per-user columns of one arm (one row per user)."""

    name: str
    columns: dict[str, np.ndarray]
    has_history: np.ndarray

    @property
    def n(self) -> int:
        return len(self.has_history)


def _pre_covariates(pre: dict[str, _UserAcc]) -> dict[str, tuple[float, float]]:
    """user -> (pre-period breadth, pre-period depth)."""
    return {
        user: (float(acc.returned), acc.user_messages / acc.sessions)
        for user, acc in pre.items()
        if acc.sessions
    }


def _build_arms(
    accs: Mapping[str, _UserAcc], pre: Mapping[str, tuple[float, float]] | None
) -> tuple[dict[str, _Arm], int, int]:
    """Split users by arm, dropping multi-arm users; returns arms, excluded users, sessions."""
    by_arm: dict[str, list[tuple[str, _UserAcc]]] = {}
    excluded_users = excluded_sessions = 0
    for user, acc in accs.items():
        if len(acc.arms) != 1:
            excluded_users += 1
            excluded_sessions += acc.sessions
            continue
        by_arm.setdefault(next(iter(acc.arms)), []).append((user, acc))
    pre = pre or {}
    kept = [u for rows in by_arm.values() for u, _ in rows if u in pre]
    fill = (
        (float(np.mean([pre[u][0] for u in kept])), float(np.mean([pre[u][1] for u in kept])))
        if kept
        else (0.0, 0.0)
    )
    arms = {name: _arm_columns(name, rows, pre, fill) for name, rows in by_arm.items()}
    return arms, excluded_users, excluded_sessions


def _arm_columns(
    name: str,
    rows: Sequence[tuple[str, _UserAcc]],
    pre: Mapping[str, tuple[float, float]],
    fill: tuple[float, float],
) -> _Arm:
    def col(values: Iterable[float]) -> np.ndarray:
        return np.fromiter(values, dtype=float, count=len(rows))

    accs = [acc for _, acc in rows]
    covariates = [pre.get(user, fill) for user, _ in rows]
    columns = {
        "returned": col(float(a.returned) for a in accs),
        "ones": np.ones(len(rows)),
        "user_messages": col(a.user_messages for a in accs),
        "sessions": col(a.sessions for a in accs),
        "thumbs_up": col(a.thumbs_up for a in accs),
        "thumbs_down": col(a.thumbs_down for a in accs),
        "rated": col(a.thumbs_up + a.thumbs_down for a in accs),
        "violations": col(a.violations for a in accs),
        "checks": col(a.checks for a in accs),
        "x_breadth": col(c[0] for c in covariates),
        "x_depth": col(c[1] for c in covariates),
    }
    has_history = np.fromiter((u in pre for u, _ in rows), dtype=bool, count=len(rows))
    return _Arm(name, columns, has_history)


def _design(arm: _Arm, metrics: Sequence[str], cuped: bool) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Matrix (users x k) of the per-user products whose sums the estimators need."""
    blocks: list[np.ndarray] = []
    labels: list[tuple[str, str]] = []
    for metric in metrics:
        num, den, cov = _METRICS[metric]
        y, n = arm.columns[num], arm.columns[den]
        products = {"y": y, "n": n, "yy": y * y, "nn": n * n, "yn": y * n}
        if cuped and cov is not None:
            x = arm.columns[cov]
            products |= {"x": x, "xx": x * x, "yx": y * x, "nx": n * x}
        for key, values in products.items():
            blocks.append(values)
            labels.append((metric, key))
    return np.column_stack(blocks), labels



# --------------------------------------------------------------------------- per challenger


@dataclass(frozen=True)
class _Settings:
    z: float
    alpha: float
    bootstrap: int
    margin: float
    cuped: bool
    with_violations: bool


def _z_p(estimate: float, variance: float) -> float:
    if not finite(estimate, variance) or variance <= 0:
        return math.nan
    return float(2 * stats.norm.sf(abs(estimate) / math.sqrt(variance)))


def _ci(estimate: float, variance: float, z: float) -> tuple[float, float]:
    if not finite(estimate, variance) or variance < 0:
        return math.nan, math.nan
    half = z * math.sqrt(variance)
    return estimate - half, estimate + half


def _percentile_ci(samples: np.ndarray | None, alpha: float) -> tuple[float | None, float | None]:
    if samples is None:
        return None, None
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _lift_estimate(
    metric: str,
    est: Mapping[str, np.ndarray],
    boot: Mapping[str, np.ndarray] | None,
    settings: _Settings,
    users_with_history: int,
) -> LiftEstimate:
    lift, var = float(est["lift"]), float(est["var_lift"])
    primary_var = var
    lo, hi = _ci(lift, var, settings.z)
    boot_lo, boot_hi = _percentile_ci(boot["lift"] if boot else None, settings.alpha)
    cuped = None
    if "cuped_lift" in est:
        c_lift, c_var = float(est["cuped_lift"]), float(est["cuped_var_lift"])
        c_lo, c_hi = _ci(c_lift, c_var, settings.z)
        c_boot = _percentile_ci(boot["cuped_lift"] if boot else None, settings.alpha)
        reduction = 1 - c_var / var if finite(c_var, var) and var > 0 else math.nan
        cuped = CupedEstimate(
            c_lift, c_lo, c_hi, _z_p(c_lift, c_var), float(est["theta"]), reduction,
            c_boot[0], c_boot[1], users_with_history,
        )
        if finite(c_lo, c_hi):
            primary_var = c_var
    power_z = settings.z + float(stats.norm.ppf(POWER))
    mde = power_z * math.sqrt(primary_var) if finite(primary_var) and primary_var >= 0 else None
    return LiftEstimate(
        metric, float(est["control"]), float(est["challenger"]), lift, lo, hi,
        _z_p(lift, var), boot_lo, boot_hi, cuped, mde,
    )


def _guardrail(metric: str, est: Mapping[str, np.ndarray], settings: _Settings) -> GuardrailCheck:
    worse_up = _GUARDRAILS[metric]
    diff, var = float(est["diff"]), float(est["var_diff"])
    lo, hi = _ci(diff, var, settings.z)
    evaluated = finite(lo, hi)
    breached = evaluated and (lo > settings.margin if worse_up else hi < -settings.margin)
    return GuardrailCheck(
        metric, worse_up, float(est["control"]), float(est["challenger"]), diff, lo, hi,
        _z_p(diff, var), settings.margin, evaluated, breached,
    )


def _verdict(
    lifts: Sequence[LiftEstimate], guardrails: Sequence[GuardrailCheck], srm: SRMCheck
) -> tuple[str, tuple[str, ...]]:
    reasons: list[str] = []
    negative = positive = False
    for lift in lifts:
        lo, hi = lift.primary_ci
        tag = f"{lift.metric} {lift.primary_lift:+.2%} [{lo:+.2%}, {hi:+.2%}] ({lift.primary})"
        if lift.direction > 0:
            positive = True
            reasons.append(f"{tag} significantly positive")
        elif lift.direction < 0:
            negative = True
            reasons.append(f"{tag} significantly negative")
        elif lo > 0 or hi < 0:
            boot_lo, boot_hi = lift.primary_boot_ci
            reasons.append(f"{tag} not significant: the bootstrap CI [{boot_lo:+.2%}, {boot_hi:+.2%}] spans zero")
    breached = [g for g in guardrails if g.breached]
    reasons += [
        f"guardrail {g.metric} breached: {g.diff:+.4f} [{g.ci_lo:+.4f}, {g.ci_hi:+.4f}]" for g in breached
    ]
    if srm.mismatch:
        return INCONCLUSIVE, (f"sample ratio mismatch (p={srm.p_value:.2g})", *reasons)
    if negative or breached:
        return NO_SHIP, tuple(reasons)
    if positive:
        return SHIP, tuple(reasons)
    return INCONCLUSIVE, tuple(reasons) or ("no significant engagement lift",)


def _challenger(
    control: _Arm, challenger: _Arm, settings: _Settings, rng: np.random.Generator, srm: SRMCheck
) -> ChallengerResult:
    metrics = [*ENGAGEMENT_METRICS, "thumbs_down_rate", "thumbs_up_rate"]
    if settings.with_violations:
        metrics.append("violation_rate")
    dc, labels = _design(control, metrics, settings.cuped)
    dt, _ = _design(challenger, metrics, settings.cuped)
    nc, nt = control.n, challenger.n
    observed_c, observed_t = unpack(dc.sum(axis=0), labels), unpack(dt.sum(axis=0), labels)
    est = {m: estimates(observed_c[m], observed_t[m], nc, nt) for m in metrics}
    boot: dict[str, dict[str, np.ndarray]] = {}
    if settings.bootstrap > 0:
        keep = [j for j, (m, _) in enumerate(labels) if m in ENGAGEMENT_METRICS]
        sub = [labels[j] for j in keep]
        bc = unpack(resample_sums(dc[:, keep], settings.bootstrap, rng), sub)
        bt = unpack(resample_sums(dt[:, keep], settings.bootstrap, rng), sub)
        boot = {m: estimates(bc[m], bt[m], nc, nt) for m in ENGAGEMENT_METRICS}
    history = int(control.has_history.sum() + challenger.has_history.sum())
    lifts = [_lift_estimate(m, est[m], boot.get(m), settings, history) for m in ENGAGEMENT_METRICS]
    guardrails = tuple(_guardrail(m, est[m], settings) for m in metrics if m in _GUARDRAILS)
    verdict, reasons = _verdict(lifts, guardrails, srm)
    return ChallengerResult(challenger.name, lifts[0], lifts[1], guardrails, verdict, reasons)


# --------------------------------------------------------------------------- arms and SRM


def _summary(arm: _Arm, with_violations: bool, cuped: bool) -> ArmSummary:
    c = arm.columns

    def ratio(num: str, den: str) -> float:
        total = c[den].sum()
        return float(c[num].sum() / total) if total > 0 else math.nan

    checks = int(c["checks"].sum())
    return ArmSummary(
        arm=arm.name,
        users=arm.n,
        sessions=int(c["sessions"].sum()),
        user_messages=int(c["user_messages"].sum()),
        returning_users=int(c["returned"].sum()),
        breadth=ratio("returned", "ones"),
        depth=ratio("user_messages", "sessions"),
        rated_turns=int(c["rated"].sum()),
        thumbs_up_rate=ratio("thumbs_up", "rated"),
        thumbs_down_rate=ratio("thumbs_down", "rated"),
        violation_checks=checks,
        violation_rate=ratio("violations", "checks") if with_violations and checks else None,
        users_with_history=int(arm.has_history.sum()) if cuped else None,
    )


def _srm(observed: Mapping[str, int], expected_split: Mapping[str, float] | None, alpha: float) -> SRMCheck:
    if expected_split is None:
        shares = {arm: 1.0 / len(observed) for arm in observed}
    else:
        unknown = sorted(set(observed) - set(expected_split))
        if unknown:
            raise ValueError(f"arms {unknown} are missing from expected_split")
        total = float(sum(expected_split.values()))
        shares = {arm: float(w) / total for arm, w in expected_split.items()}
    counts = {arm: int(observed.get(arm, 0)) for arm in shares}
    n = sum(counts.values())
    if len(counts) < 2 or n == 0:
        return SRMCheck(counts, shares, math.nan, math.nan, alpha, False)
    f_obs = np.array([counts[a] for a in shares], dtype=float)
    f_exp = np.array([shares[a] * n for a in shares])
    chi2, p = stats.chisquare(f_obs, f_exp)
    return SRMCheck(counts, shares, float(chi2), float(p), alpha, bool(p < alpha))


# --------------------------------------------------------------------------- entry point


def analyze_ab(
    sessions: Iterable[Mapping[str, Any]],
    pre_period: Iterable[Mapping[str, Any]] | None = None,
    control_arm: str = "control",
    bootstrap: int = 1000,
    seed: int = 0,
    violation_of: ViolationFn | None = None,
    guardrail_margin: float = 0.0,
    *,
    expected_split: Mapping[str, float] | None = None,
    confidence: float = 0.95,
    srm_alpha: float = 0.001,
) -> ABResult:
    """Analyse an A/B test from conversation records (see the module docstring).

    ``sessions``: the experiment window's conversations, each with ``arm``; records without an
    arm are skipped and counted. ``pre_period``: conversations of an earlier window for CUPED
    (their ``arm`` is ignored). ``bootstrap``: resamples for the bootstrap CIs (0 disables).
    ``guardrail_margin``: tolerated absolute worsening of a guardrail rate. ``expected_split``:
    arm -> weight for the SRM test (equal by default).
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    accs, unassigned = _accumulate(sessions, violation_of, need_arm=True)
    pre = None
    if pre_period is not None:
        pre = _pre_covariates(_accumulate(pre_period, None, need_arm=False)[0])
    arms, excluded_users, excluded_sessions = _build_arms(accs, pre)
    if control_arm not in arms:
        raise ValueError(f"control arm {control_arm!r} not in traffic (arms: {sorted(arms)})")
    alpha = 1 - confidence
    settings = _Settings(
        z=float(stats.norm.ppf(1 - alpha / 2)),
        alpha=alpha,
        bootstrap=max(int(bootstrap), 0),
        margin=float(guardrail_margin),
        cuped=pre is not None,
        with_violations=violation_of is not None,
    )
    order = [control_arm, *sorted(a for a in arms if a != control_arm)]
    srm = _srm({a: arms[a].n for a in order}, expected_split, srm_alpha)
    streams = np.random.SeedSequence(seed).spawn(max(len(order) - 1, 1))
    challengers = {
        name: _challenger(arms[control_arm], arms[name], settings, np.random.default_rng(stream), srm)
        for name, stream in zip(order[1:], streams)
    }
    return ABResult(
        control_arm=control_arm,
        confidence=confidence,
        arms={a: _summary(arms[a], settings.with_violations, settings.cuped) for a in order},
        challengers=challengers,
        srm=srm,
        excluded_users=excluded_users,
        excluded_sessions=excluded_sessions,
        unassigned_sessions=unassigned,
        bootstrap=settings.bootstrap,
        seed=seed,
        cuped=settings.cuped,
        guardrail_margin=settings.margin,
    )


# --------------------------------------------------------------------------- output


def finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, LiftEstimate):
            out["primary"] = value.primary
        return out
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------- reading ab.json


def lift(ab: Mapping[str, Any], metric: str, arm: str = "challenger") -> dict[str, float | None]:
    """``arm``'s relative lift of ``metric`` over the control (the champion), with its 95 % CI:
    the estimate the verdict reads (CUPED when there was a pre-period, else the delta method)."""
    entry = ab.get("challengers", {}).get(arm, {}).get(metric, {})
    shown = entry.get("cuped") if entry.get("primary") == "cuped" and entry.get("cuped") else entry
    return {"value": shown.get("lift"), "lo": shown.get("ci_lo"), "hi": shown.get("ci_hi"),
            "boot_lo": shown.get("boot_ci_lo"), "boot_hi": shown.get("boot_ci_hi"), "estimate": entry.get("primary"),
            "mde": entry.get("mde"),
            "control": entry.get("control"), "challenger": entry.get("challenger"),
            "n": ab.get("arms", {}).get(arm, {}).get("users")}


def change(ab: Mapping[str, Any], metric: str) -> float:
    entry = lift(ab, metric)
    if entry["control"] is None or entry["challenger"] is None:
        return 0.0
    return float(entry["challenger"]) - float(entry["control"])
