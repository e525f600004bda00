"""Deployment gates (issue 7 item 2): may this child replace its parent as challenger?

``apply_gates(offline_report_dict, style_report_dict, settings, user_signal_win_rate)`` reads the
JSON form of the offline evaluation (``OfflineReport.to_dict()``, e.g. ``offline_report.json``) and
returns a ``GateDecision``: ``passed`` and one check per gate, each ``{name, value, threshold,
passed, reason}`` with a human-readable reason. A failed gate stops the child from deploying; the
parent stays champion (the caller records the decision with the model).

Gates (thresholds in ``EvaluateConfig``, the ``[evaluate]`` section):

* ``win_rate_vs_parent.<judge>`` for each judge in ``gated_win_rate_judges`` -- compared with
  ``min_win_rate_vs_parent`` by ``win_rate_test``: ``superiority`` (the CI *lower bound* above it: the
  gain must be significant), ``point`` (the point estimate above it) or ``non_inferiority`` (the CI
  *upper bound* reaches it: the child fails only when the judge significantly prefers the parent; the
  standard guardrail when the evaluation is too small to resolve a generation's gain). A missing
  reward-model figure fails; missing annotator figures are skipped.
* ``evidence_vs_parent`` -- only when ``min_evidence_z`` is set: the offline report's combined z of the
  reward models' and the user-signal model's paired evidence that the child beats its parent must be
  above it (``offline.Evidence``); not measured fails.
  With ``steerability_step_min_evidence_z`` a child short of that evidence still passes as a
  steerability step: its evidence above that lower bar (engagement not significantly worse) and its
  instruction-following rate significantly above its parent's (the paired difference's CI above 0).
  The paper's flywheel climbs on both engagement and steerability; a gate reading engagement only
  stops children that keep their parent's engagement and follow their cards better.
* ``win_rate_vs_reference.<judge>`` -- only when ``min_win_rate_vs_reference`` is set.
* ``violation_rate_not_worse`` -- child minus parent violation rate at most
  ``max_violation_increase``. With ``guardrails_need_significance`` (default, the A/B guardrails'
  rule) it fails when the whole CI of the difference lies above the tolerance; without it the point
  estimate decides (stricter, but noisy on a few dozen prompts).
* ``instruction_following_not_lower`` -- likewise, the following rate may fall at most
  ``max_following_decrease``.
* ``broken_replies_not_more`` -- likewise, the share of broken replies (loops, emoji spam, too short,
  echoes of the conversation's earlier replies) may rise at most ``max_broken_reply_increase`` over
  the parent's, paired by prompt: a child whose weights broke writes "(   (  world", which the reward
  models of a small run may score at chance (a win rate of 0.498 [0.488, 0.506] for it on the tiny
  preset); missing figures (an offline report from before it) skip the check.
* ``no_style_artifact`` -- the style monitor flagged no feature (``forbid_style_artifacts``).
* ``user_signal_win_rate`` -- below ``max_user_signal_win_rate`` (paper 7.4: past 65 % the child is
  hacking the user-signal proxy), unless (``user_signal_gate = "divergence"``, the default) the reward
  models do not prefer the parent (read by ``win_rate_test``): the paper's sign of hacking is the two
  diverging; skipped when no user-signal figure was measured.

A skipped check is recorded with ``passed: True`` and ``skipped: True`` and the reason why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from characterflywheel.data.jsonl import write_json

from characterflywheel.evaluate.settings import EvaluateConfig

__all__ = ["GateCheck", "GateDecision", "apply_gates", "read_gates"]


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float | None
    threshold: float | None
    passed: bool
    reason: str
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def failed(self) -> list[GateCheck]:
        return [check for check in self.checks if not check.passed]

    @property
    def reasons(self) -> list[str]:
        """Why the child was stopped (empty when it passed)."""
        return [f"{check.name}: {check.reason}" for check in self.failed]

    def summary(self) -> str:
        if self.passed:
            return f"passed all {len(self.checks)} gate checks"
        return "failed: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [check.to_dict() for check in self.checks], "reasons": self.reasons}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateDecision:
        return cls(passed=bool(data["passed"]), checks=[GateCheck(**check) for check in data.get("checks", [])])

    def write(self, path: Path | str) -> None:
        write_json(path, self.to_dict())


def read_gates(path: Path | str) -> GateDecision:
    """A gate stage's decision (``artifacts.GATES``) as written by ``GateDecision.write``."""
    return GateDecision.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# --------------------------------------------------------------------------------------------------
# Reading figures
# --------------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _figure(data: Any, path: str) -> dict[str, float | None] | None:
    """``{value, lo, hi, n}`` at a dotted path of the report, None when absent."""
    node = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return None
        node = node[part]
    if isinstance(node, Mapping):
        return {key: _number(node.get(key)) for key in ("value", "lo", "hi", "n")}
    value = _number(node)
    return None if value is None else {"value": value, "lo": None, "hi": None, "n": None}


def _interval(figure: Mapping[str, float | None]) -> str:
    lo, hi, n = figure.get("lo"), figure.get("hi"), figure.get("n")
    parts = []
    if lo is not None and hi is not None:
        parts.append(f"CI [{lo:.3f}, {hi:.3f}]")
    if n is not None:
        parts.append(f"n={int(n)}")
    return f" ({', '.join(parts)})" if parts else ""


def _skipped(name: str, threshold: float | None, reason: str) -> GateCheck:
    return GateCheck(name, None, threshold, True, reason, skipped=True)


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


def _win_rate_check(name: str, figure: Mapping[str, float | None] | None, threshold: float, test: str,
                    required: bool) -> GateCheck:
    if figure is None or figure.get("value") is None:
        if required:
            return GateCheck(name, None, threshold, False, "not measured: the offline report has no such win rate")
        return _skipped(name, threshold, "not measured")
    value, lo, hi = float(figure["value"]), figure.get("lo"), figure.get("hi")
    described = f"win rate {value:.3f}{_interval(figure)}"
    if test == "superiority":
        if lo is None:
            return GateCheck(name, value, threshold, False, f"{described}: no confidence interval (n too small?), "
                             f"and the superiority test needs one")
        passed = lo > threshold
        verdict = (f"CI lower bound {lo:.3f} > {threshold:.3f}" if passed
                   else f"CI lower bound {lo:.3f} is not above {threshold:.3f}: no significant win")
        return GateCheck(name, value, threshold, passed, f"{described}; {verdict}")
    if test == "non_inferiority":
        if hi is None:
            return GateCheck(name, value, threshold, False, f"{described}: no confidence interval (n too small?), "
                             f"and the non-inferiority test needs one")
        passed = hi >= threshold
        verdict = (f"CI upper bound {hi:.3f} reaches {threshold:.3f}: not significantly worse than the parent"
                   if passed else f"CI upper bound {hi:.3f} is below {threshold:.3f}: significantly worse than "
                   f"the parent")
        return GateCheck(name, value, threshold, passed, f"{described}; {verdict}")
    passed = value > threshold
    verdict = f"> {threshold:.3f}" if passed else f"is not above {threshold:.3f}"
    return GateCheck(name, value, threshold, passed, f"{described} {verdict}")


def _evidence_check(evidence: Any, threshold: float, following: Mapping[str, float | None] | None = None,
                    steerability_threshold: float | None = None) -> GateCheck:
    name = "evidence_vs_parent"
    combined = _number(evidence.get("combined_z")) if isinstance(evidence, Mapping) else None
    if combined is None:
        return GateCheck(name, None, threshold, False, "not measured: the offline report has no evidence over "
                         "the parent")
    parts = [f"reward models z {value:+.2f}"] if (value := _number(evidence.get("reward_model_z"))) is not None else []
    if (value := _number(evidence.get("user_signal_z"))) is not None:
        weight = _number(evidence.get("user_signal_weight"))
        parts.append(f"user signal z {value:+.2f}" + ("" if weight is None else f" weighted {weight:.2f}"))
    described = f"combined z {combined:+.2f} ({', '.join(parts)}; n={evidence.get('n')})"
    if combined > threshold:
        return GateCheck(name, combined, threshold, True, f"{described} > {threshold:.2f}")
    verdict = f"{described} is not above {threshold:.2f}"
    if steerability_threshold is None:
        return GateCheck(name, combined, threshold, False, verdict)
    rise = following.get("lo") if following is not None else None
    shown = (f"instruction following child - parent {following['value']:+.3f}{_interval(following)}"
             if following is not None and following.get("value") is not None else "instruction following not measured")
    if combined > steerability_threshold and rise is not None and rise > 0:
        return GateCheck(name, combined, threshold, True, f"{verdict}, but it passes as a steerability step: "
                         f"engagement not significantly worse (above {steerability_threshold:.2f}) and {shown}, "
                         f"significantly up")
    why = (f"below the steerability step's {steerability_threshold:.2f} too" if combined <= steerability_threshold
           else f"nor a steerability step: {shown}, not significantly up")
    return GateCheck(name, combined, threshold, False, f"{verdict}, {why}")


def _judge_prefers_parent(figure: Mapping[str, float | None] | None, test: str) -> bool | None:
    """Whether a win rate over the parent says the judge prefers the parent, read by the gate's own
    test: under non-inferiority only a CI wholly below 0.5 does; otherwise a point estimate at or
    below 0.5. None when not measured."""
    if figure is None or figure.get("value") is None:
        return None
    if test == "non_inferiority" and figure.get("hi") is not None:
        return float(figure["hi"]) < 0.5
    return float(figure["value"]) <= 0.5


def _guardrail_check(name: str, what: str, figure: Mapping[str, float | None] | None, tolerance: float,
                     worse_sign: float, need_significance: bool) -> GateCheck:
    """Child-minus-parent difference where ``worse_sign * difference`` > tolerance is worse."""
    if figure is not None and figure.get("value") is None and figure.get("n") == 0:
        return _skipped(name, tolerance, f"no applicable instruction checks on these prompts (no {what})")
    if figure is None or figure.get("value") is None:
        return GateCheck(name, None, tolerance, False, f"not measured: no child-minus-parent {what}")
    difference = float(figure["value"])
    worse_by = worse_sign * difference
    bound = figure.get("lo") if worse_sign > 0 else figure.get("hi")
    worse_bound = None if bound is None else worse_sign * float(bound)
    described = f"child - parent {what} = {difference:+.3f}{_interval(figure)}"
    if need_significance:
        if worse_bound is None:
            return _skipped(name, tolerance, f"{described}: no confidence interval, cannot show a significant "
                            f"worsening")
        passed = worse_bound <= tolerance
        verdict = ("not significantly worse than the parent beyond the tolerance" if passed
                   else f"significantly worse than the parent by more than the tolerance {tolerance:.3f}")
    else:
        passed = worse_by <= tolerance
        verdict = (f"within the tolerance {tolerance:.3f}" if passed
                   else f"worse than the parent by {worse_by:.3f}, more than the tolerance {tolerance:.3f}")
    return GateCheck(name, difference, tolerance, passed, f"{described}: {verdict}")


def _style_check(style: Mapping[str, Any] | None, gates: EvaluateConfig) -> GateCheck:
    name = "no_style_artifact"
    if not gates.forbid_style_artifacts:
        return _skipped(name, None, "style artifacts are not gated (forbid_style_artifacts is off)")
    if not isinstance(style, Mapping) or "flagged" not in style:
        return GateCheck(name, None, None, False, "not measured: no style report")
    flagged = list(style.get("flagged") or [])
    threshold = _number(style.get("threshold"))
    if not flagged:
        return GateCheck(name, 0.0, threshold, True, "no style feature explains more than the threshold "
                         "share of reward variance")
    features = style.get("features") or {}
    details = ", ".join(
        f"{feature} (share {_number((features.get(feature) or {}).get('share')) or 0.0:.3f})" for feature in flagged
    )
    return GateCheck(name, float(len(flagged)), threshold, False,
                     f"the reward leans on style: {details} above the threshold share {threshold}")


def _user_signal_check(figure: Mapping[str, float | None] | None, threshold: float,
                       internal: Mapping[str, float | None] | None = None, mode: str = "divergence",
                       test: str = "point") -> GateCheck:
    """``absolute``: fail at a user-signal win rate >= threshold. ``divergence`` (paper 7.4's sign of
    hacking, its version 12: user win rate 70.7 % while the internal win rate fell to 43.7 %): fail only
    when the reward models, trained on annotations, prefer the parent (``_judge_prefers_parent``, read
    by the win-rate gate's test)."""
    name = "user_signal_win_rate"
    if figure is None or figure.get("value") is None:
        return _skipped(name, threshold, "not measured: no user-signal model win rate")
    value = float(figure["value"])
    internal_value = None if internal is None or internal.get("value") is None else float(internal["value"])
    agrees = mode == "divergence" and _judge_prefers_parent(internal, test) is False
    passed = value < threshold or agrees
    if value < threshold:
        verdict = f"below {threshold:.2f}"
    elif agrees:
        verdict = (f"at or above {threshold:.2f}, but the reward models do not prefer the parent (win rate "
                   f"{internal_value:.3f}{_interval(internal)}): no divergence, no sign of hacking")
    else:
        verdict = f"at or above {threshold:.2f}: the child is likely hacking the user-signal proxy (paper 7.4)"
        if internal_value is not None:
            verdict += f"; the reward models' win rate is {internal_value:.3f}"
    return GateCheck(name, value, threshold, passed, f"user-signal win rate {value:.3f}{_interval(figure)} {verdict}")


def apply_gates(
    offline_report_dict: Mapping[str, Any],
    style_report_dict: Mapping[str, Any] | None = None,
    settings: EvaluateConfig | None = None,
    user_signal_win_rate: float | Mapping[str, Any] | None = None,
) -> GateDecision:
    """Apply every configured gate; the style report defaults to the offline report's ``style`` and the
    user-signal win rate to its ``user_signal_win_rate_vs_parent``."""
    if not isinstance(offline_report_dict, Mapping):
        raise TypeError(f"offline_report_dict: expected the offline report's to_dict(), got "
                        f"{type(offline_report_dict).__name__}")
    gates = settings or EvaluateConfig()
    report = offline_report_dict
    style = style_report_dict if style_report_dict is not None else report.get("style")

    checks: list[GateCheck] = []
    for source in gates.gated_win_rate_judges:
        checks.append(_win_rate_check(f"win_rate_vs_parent.{source}", _figure(report, f"win_rate_vs_parent.{source}"),
                                      gates.min_win_rate_vs_parent, gates.win_rate_test,
                                      required=source == "reward_model"))
    if gates.min_evidence_z is not None:
        checks.append(_evidence_check(report.get("evidence_vs_parent"), gates.min_evidence_z,
                                      _figure(report, "instruction_following.child_minus_parent"),
                                      gates.steerability_step_min_evidence_z))
    if gates.min_win_rate_vs_reference is not None:
        for source in gates.gated_win_rate_judges:
            checks.append(_win_rate_check(f"win_rate_vs_reference.{source}",
                                          _figure(report, f"win_rate_vs_reference.{source}"),
                                          gates.min_win_rate_vs_reference, gates.win_rate_test,
                                          required=source == "reward_model"))
    checks.append(_guardrail_check("violation_rate_not_worse", "violation rate",
                                   _figure(report, "violation_rate.child_minus_parent"),
                                   gates.max_violation_increase, +1.0, gates.guardrails_need_significance))
    checks.append(_guardrail_check("instruction_following_not_lower", "instruction-following rate",
                                   _figure(report, "instruction_following.child_minus_parent"),
                                   gates.max_following_decrease, -1.0, gates.guardrails_need_significance))
    broken = _figure(report, "broken_reply_rate.child_minus_parent")
    checks.append(_skipped("broken_replies_not_more", gates.max_broken_reply_increase, "not measured: an offline "
                           "report without broken-reply rates") if broken is None else
                  _guardrail_check("broken_replies_not_more", "broken-reply rate", broken,
                                   gates.max_broken_reply_increase, +1.0, gates.guardrails_need_significance))
    checks.append(_style_check(style, gates))
    signal = (_figure(report, "user_signal_win_rate_vs_parent") if user_signal_win_rate is None
              else _figure({"given": user_signal_win_rate}, "given"))
    checks.append(_user_signal_check(signal, gates.max_user_signal_win_rate,
                                     _figure(report, "win_rate_vs_parent.reward_model"), gates.user_signal_gate,
                                     gates.win_rate_test))
    return GateDecision(passed=all(check.passed for check in checks), checks=checks)
