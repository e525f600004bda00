"""History-bias monitor (paper 7.5): does the policy copy features from the dialogue history?

An autoregressive policy mimics its context: emoji in earlier turns make emoji in the reply more
likely, whatever the reward says. The paper removed emoji from the reward model's inputs and saw RL
reintroduce them anyway (usage 0.2 -> 0.48). Two reports catch that:

* ``history_bias(prompts, replies)``: for each watched feature, the rate of the feature in the
  replies when it is present in the history vs when it is absent, their difference (Newcombe
  interval), the counts, and the overall output rate (Wilson interval). ``mirrors`` is True when the
  difference's whole interval is above 0.
* ``reintroduction_flag(parent_report, child_report, reward_sees_feature)``: per feature, the
  child's output rate minus the parent's (Newcombe interval); ``flagged`` when it rose beyond the
  interval while the reward model did *not* see the feature (it was stripped from its inputs). The
  reward cannot have asked for it, so the history did.

Features (``FEATURE_DETECTORS``; a text "has" the feature when): ``emoji`` -- at least one emoji
(``instructions.count_emoji``); ``list`` -- a bullet or numbered line (``instructions.has_list``);
``question`` -- a question mark anywhere; ``exclamation`` -- an exclamation mark anywhere;
``phrase:<text>`` -- the phrase, whole words, case-insensitive (``instructions.contains_phrase``).
The same names are used by the train package's ``strip_feature(text, feature)``; the monitor works
the same on stripped or unstripped histories (a stripped history simply has the feature absent).

Assumptions: the history is the prompt's messages of the roles in ``history_roles`` (user and
assistant by default; the system prompt is the character card, whose rules are measured by the
instruction checkers instead). Several replies per prompt are allowed (a list per prompt); every
reply counts as one observation, so with several samples per prompt the intervals are somewhat too
narrow (samples of one prompt are correlated). Reports are accepted as objects or as their
``to_dict()`` form (read back from JSON).

Libraries: the intervals come from :mod:`characterflywheel.evaluate.style` (scipy's Wilson interval
and the Newcombe difference built on it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from characterflywheel.characters.instructions import contains_phrase, count_emoji, has_list
from characterflywheel.evaluate.settings import EvaluateConfig
from characterflywheel.evaluate.stats import Estimate, newcombe_difference, wilson

__all__ = [
    "FEATURE_DETECTORS",
    "HistoryBiasReport",
    "HistoryFeatureStats",
    "ReintroductionCheck",
    "ReintroductionReport",
    "feature_detector",
    "history_bias",
    "history_has_feature",
    "reintroduction_flag",
]

FEATURE_DETECTORS: dict[str, Callable[[str], bool]] = {
    "emoji": lambda text: count_emoji(text) > 0,
    "list": has_list,
    "question": lambda text: "?" in text or "？" in text,
    "exclamation": lambda text: "!" in text or "！" in text,
}
_PHRASE_PREFIX = "phrase:"


def feature_detector(feature: str) -> Callable[[str], bool]:
    """The predicate for a feature name (see the module docstring)."""
    if feature in FEATURE_DETECTORS:
        return FEATURE_DETECTORS[feature]
    if feature.startswith(_PHRASE_PREFIX) and feature[len(_PHRASE_PREFIX):].strip():
        phrase = feature[len(_PHRASE_PREFIX):].strip()
        return lambda text: contains_phrase(text, phrase)
    known = ", ".join([*FEATURE_DETECTORS, "phrase:<text>"])
    raise ValueError(f"features: unknown feature {feature!r} (known: {known})")


def _messages(prompt: Any, index: int) -> list[Mapping[str, Any]]:
    """Messages of a prompt given as a message list or as a contract prompt record."""
    messages = prompt.get("prompt") if isinstance(prompt, Mapping) else prompt
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        raise ValueError(f"prompts[{index}]: prompt: must be a list of messages (got {type(messages).__name__})")
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise ValueError(f"prompts[{index}]: prompt[{position}]: must be a message with string content")
    return list(messages)


def history_has_feature(messages: Sequence[Mapping[str, Any]], detector: Callable[[str], bool],
                        roles: Sequence[str] = ("user", "assistant")) -> bool:
    """Whether any message of the given roles shows the feature."""
    return any(message.get("role") in roles and detector(str(message["content"])) for message in messages)


def _replies_per_prompt(replies: Sequence[str] | Sequence[Sequence[str]], count: int) -> list[list[str]]:
    if len(replies) != count:
        raise ValueError(f"replies: {len(replies)} entries for {count} prompts (one reply or list per prompt)")
    grouped: list[list[str]] = []
    for index, entry in enumerate(replies):
        group = [entry] if isinstance(entry, str) else list(entry)
        if not all(isinstance(reply, str) for reply in group):
            raise ValueError(f"replies[{index}]: must be a string or a list of strings")
        grouped.append(group)
    return grouped


@dataclass(frozen=True)
class HistoryFeatureStats:
    feature: str
    n_present: int
    n_absent: int
    rate_present: Estimate
    rate_absent: Estimate
    difference: Estimate
    output_rate: Estimate
    history_rate: Estimate

    @property
    def mirrors(self) -> bool:
        """The feature is significantly more frequent in replies when the history has it."""
        return self.difference.excludes(0.0) and self.difference.value > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "n_present": self.n_present,
            "n_absent": self.n_absent,
            "rate_present": self.rate_present.to_dict(),
            "rate_absent": self.rate_absent.to_dict(),
            "difference": self.difference.to_dict(),
            "output_rate": self.output_rate.to_dict(),
            "history_rate": self.history_rate.to_dict(),
            "mirrors": self.mirrors,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryFeatureStats:
        return cls(
            feature=str(data["feature"]),
            n_present=int(data["n_present"]),
            n_absent=int(data["n_absent"]),
            **{key: Estimate.from_dict(data[key]) for key in
               ("rate_present", "rate_absent", "difference", "output_rate", "history_rate")},
        )


@dataclass(frozen=True)
class HistoryBiasReport:
    n: int
    roles: tuple[str, ...]
    features: dict[str, HistoryFeatureStats] = field(default_factory=dict)

    @property
    def mirrored(self) -> list[str]:
        return [name for name, stats in self.features.items() if stats.mirrors]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "roles": list(self.roles),
            "mirrored": self.mirrored,
            "features": {name: stats.to_dict() for name, stats in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryBiasReport:
        features = {name: HistoryFeatureStats.from_dict(stats) for name, stats in data["features"].items()}
        return cls(n=int(data["n"]), roles=tuple(data.get("roles", ())), features=features)


def history_bias(
    prompts: Sequence[Any],
    replies: Sequence[str] | Sequence[Sequence[str]],
    features: Sequence[str] | None = None,
    settings: EvaluateConfig | None = None,
) -> HistoryBiasReport:
    """Output rate of each feature by its presence in the history (see the module docstring)."""
    settings = settings or EvaluateConfig()
    chosen = list(features) if features is not None else list(settings.history_features)
    roles = tuple(settings.history_roles)
    histories = [_messages(prompt, index) for index, prompt in enumerate(prompts)]
    grouped = _replies_per_prompt(replies, len(histories))
    confidence = settings.confidence
    result: dict[str, HistoryFeatureStats] = {}
    for feature in chosen:
        detector = feature_detector(feature)
        counts = {True: [0, 0], False: [0, 0]}  # history has feature -> [replies with it, replies]
        prompts_with = 0
        for history, group in zip(histories, grouped):
            present = history_has_feature(history, detector, roles)
            prompts_with += present
            counts[present][0] += sum(detector(reply) for reply in group)
            counts[present][1] += len(group)
        (hits_present, n_present), (hits_absent, n_absent) = counts[True], counts[False]
        result[feature] = HistoryFeatureStats(
            feature=feature,
            n_present=n_present,
            n_absent=n_absent,
            rate_present=wilson(hits_present, n_present, confidence),
            rate_absent=wilson(hits_absent, n_absent, confidence),
            difference=newcombe_difference(hits_present, n_present, hits_absent, n_absent, confidence),
            output_rate=wilson(hits_present + hits_absent, n_present + n_absent, confidence),
            history_rate=wilson(prompts_with, len(histories), confidence),
        )
    return HistoryBiasReport(n=sum(len(group) for group in grouped), roles=roles, features=result)


# --------------------------------------------------------------------------------------------------
# Reintroduction of a feature the reward model no longer sees
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReintroductionCheck:
    feature: str
    parent_rate: Estimate
    child_rate: Estimate
    change: Estimate
    rose: bool
    reward_sees_feature: bool
    flagged: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "parent_rate": self.parent_rate.to_dict(),
            "child_rate": self.child_rate.to_dict(),
            "change": self.change.to_dict(),
            "rose": self.rose,
            "reward_sees_feature": self.reward_sees_feature,
            "flagged": self.flagged,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ReintroductionReport:
    checks: dict[str, ReintroductionCheck]

    @property
    def flagged(self) -> list[str]:
        return [name for name, check in self.checks.items() if check.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "checks": {name: check.to_dict() for name, check in self.checks.items()}}


def _as_report(report: HistoryBiasReport | Mapping[str, Any], name: str) -> HistoryBiasReport:
    if isinstance(report, HistoryBiasReport):
        return report
    if isinstance(report, Mapping):
        try:
            return HistoryBiasReport.from_dict(report)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{name}: not a history-bias report ({type(error).__name__}: {error})") from None
    raise TypeError(f"{name}: expected a HistoryBiasReport or its to_dict(), got {type(report).__name__}")


def _reward_sees(feature: str, reward_sees_feature: bool | Mapping[str, bool] | None,
                 settings: EvaluateConfig) -> bool:
    if isinstance(reward_sees_feature, bool):
        return reward_sees_feature
    if isinstance(reward_sees_feature, Mapping) and feature in reward_sees_feature:
        return bool(reward_sees_feature[feature])
    return feature not in settings.reward_stripped_features


def _count(rate: Estimate) -> tuple[int, int]:
    return int(round(rate.value * rate.n)) if rate.n else 0, rate.n


def reintroduction_flag(
    parent_report: HistoryBiasReport | Mapping[str, Any],
    child_report: HistoryBiasReport | Mapping[str, Any],
    reward_sees_feature: bool | Mapping[str, bool] | None = None,
    settings: EvaluateConfig | None = None,
) -> ReintroductionReport:
    """Per feature in both reports: did the child's output rate rise beyond the CI while the reward
    model's inputs had the feature stripped? ``reward_sees_feature``: one bool for all features, a
    mapping per feature, or None to read ``settings.reward_stripped_features``."""
    settings = settings or EvaluateConfig()
    parent, child = _as_report(parent_report, "parent_report"), _as_report(child_report, "child_report")
    checks: dict[str, ReintroductionCheck] = {}
    for feature in child.features:
        if feature not in parent.features:
            continue
        parent_rate, child_rate = parent.features[feature].output_rate, child.features[feature].output_rate
        change = newcombe_difference(*_count(child_rate), *_count(parent_rate), settings.confidence)
        rose = change.value > 0 and change.excludes(0.0)
        sees = _reward_sees(feature, reward_sees_feature, settings)
        flagged = rose and not sees
        movement = (f"{feature} output rate {parent_rate.value:.3f} -> {child_rate.value:.3f} "
                    f"(change {change.value:+.3f}, CI [{change.lo:+.3f}, {change.hi:+.3f}])")
        if flagged:
            reason = f"{movement} rose although the reward model's inputs had {feature} stripped: history bias"
        elif rose:
            reason = f"{movement} rose; the reward model sees {feature}, so the reward may ask for it"
        else:
            reason = f"{movement}: no significant rise"
        checks[feature] = ReintroductionCheck(feature, parent_rate, child_rate, change, rose, sees, flagged, reason)
    return ReintroductionReport(checks)
