"""Style-artifact monitor (paper 5.3): is the reward paying for style instead of substance?

For each reply we measure surface features (``style_features``): length in words, whether it has a
list, emoji count, whether it ends with / contains a question, exclamation marks, how many flattery
words it uses, and one 0/1 feature per watched phrase ("I feel like", "as an AI", ...). The text
primitives come from :mod:`characterflywheel.characters.instructions`, so "emoji", "list" and "ends
with a question" mean exactly what the instruction checkers mean.

``style_monitor(replies, rewards, parent_replies)`` then reports, per feature:

* its mean in the policy's outputs (bootstrap CI over replies);
* its mean among the high- vs the low-reward replies (top vs bottom ``style_quantile`` of rewards)
  and their difference (bootstrap CI);
* its **share of reward variance**: the R^2 of a univariate least-squares fit of reward on the
  feature (= squared Pearson correlation, with its p-value), and its partial R^2 in the joint
  linear model of all features (how much the residual variance grows when it is dropped);
* a **flag** when the share chosen by ``style_share`` is above ``style_variance_threshold`` and the
  correlation is significant at ``style_alpha`` (a small sample would otherwise flag noise), given
  at least ``style_min_replies`` replies, and, when parent replies are given, the child moved the
  feature the way the reward leans (child minus parent, CI excluding 0, of the correlation's sign).
  Leaning alone is the reward models' taste; a child that moved with it is what paper 5.3 warns of.
  Without the movement the gate stopped children that had moved against the lean: `demo16`'s
  generation 1 asked back more (+0.22) where the reward paid for fewer questions, +0.083 on the
  truth; `five6`'s and `demo11`'s alike (docs/climb.md, twelfth round);
* when parent replies are given, the parent's mean and the child-minus-parent movement (bootstrap
  CI over the two independent samples; ``moved`` when the CI excludes 0).

Assumptions: rewards are one scalar per reply, higher is better (any scale); replies and rewards
are aligned. Constant features explain nothing (R^2 = 0) and are left out of the joint model.

Libraries: scipy does the Pearson test; scikit-learn fits the joint linear model.
The intervals (bootstrap, Wilson, Newcombe) live in :mod:`characterflywheel.evaluate.stats`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from characterflywheel.characters.instructions import (
    contains_phrase,
    count_emoji,
    ends_with_question,
    has_list,
    word_count,
)
from characterflywheel.evaluate.settings import EvaluateConfig
from characterflywheel.evaluate.stats import Estimate, bootstrap_mean, bootstrap_mean_difference, clean

__all__ = [
    "StyleFeatureStats",
    "StyleReport",
    "feature_matrix",
    "style_feature_names",
    "style_features",
    "style_monitor",
]


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------

BASE_FEATURES = (
    "length_words",
    "has_list",
    "emoji_count",
    "ends_with_question",
    "has_question",
    "exclamation_count",
    "flattery_count",
)
_EXCLAMATION = re.compile(r"[!！]")
_QUESTION = re.compile(r"[?？‽]")


def _phrase_feature(phrase: str) -> str:
    return "phrase:" + " ".join(phrase.lower().split())


def style_feature_names(settings: EvaluateConfig | None = None) -> list[str]:
    """Feature names in ``style_features`` order."""
    settings = settings or EvaluateConfig()
    phrases = [_phrase_feature(phrase) for phrase in settings.style_watched_phrases]
    return [*BASE_FEATURES, *dict.fromkeys(phrases)]


def style_features(reply: str, settings: EvaluateConfig | None = None) -> dict[str, float]:
    """Surface features of one reply (definitions in the module docstring)."""
    if not isinstance(reply, str):
        raise TypeError(f"reply must be a string, got {type(reply).__name__}")
    settings = settings or EvaluateConfig()
    features: dict[str, float] = {
        "length_words": float(word_count(reply)),
        "has_list": float(has_list(reply)),
        "emoji_count": float(count_emoji(reply)),
        "ends_with_question": float(ends_with_question(reply)),
        "has_question": float(_QUESTION.search(reply) is not None),
        "exclamation_count": float(len(_EXCLAMATION.findall(reply))),
        "flattery_count": float(sum(contains_phrase(reply, word) for word in settings.style_flattery_words)),
    }
    for phrase in settings.style_watched_phrases:
        features[_phrase_feature(phrase)] = float(contains_phrase(reply, phrase))
    return features


def feature_matrix(replies: Sequence[str], settings: EvaluateConfig | None = None) -> tuple[list[str], np.ndarray]:
    """(feature names, replies x features matrix)."""
    names = style_feature_names(settings)
    rows = [style_features(reply, settings) for reply in replies]
    matrix = np.array([[row[name] for name in names] for row in rows], dtype=float).reshape(len(rows), len(names))
    return names, matrix


# --------------------------------------------------------------------------------------------------
# Monitor
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StyleFeatureStats:
    """One feature's figures (see the module docstring)."""

    name: str
    mean: Estimate
    high_reward_mean: float | None
    low_reward_mean: float | None
    high_minus_low: Estimate | None
    r2: float | None
    p_value: float | None
    partial_r2: float | None
    share: float | None
    flagged: bool
    parent_mean: Estimate | None = None
    child_minus_parent: Estimate | None = None

    @property
    def moved(self) -> bool | None:
        """Whether the child moved this feature away from the parent beyond the CI (None: no parent)."""
        return None if self.child_minus_parent is None else self.child_minus_parent.excludes(0.0)

    def to_dict(self) -> dict[str, Any]:
        def fig(value: Estimate | None) -> dict[str, Any] | None:
            return None if value is None else value.to_dict()

        return {
            "mean": self.mean.to_dict(),
            "high_reward_mean": clean(self.high_reward_mean),
            "low_reward_mean": clean(self.low_reward_mean),
            "high_minus_low": fig(self.high_minus_low),
            "r2": clean(self.r2),
            "p_value": clean(self.p_value),
            "partial_r2": clean(self.partial_r2),
            "share": clean(self.share),
            "flagged": self.flagged,
            "parent_mean": fig(self.parent_mean),
            "child_minus_parent": fig(self.child_minus_parent),
            "moved": self.moved,
        }


@dataclass(frozen=True)
class StyleReport:
    n: int
    n_parent: int | None
    threshold: float
    share_kind: str
    joint_r2: float | None
    features: dict[str, StyleFeatureStats] = field(default_factory=dict)

    @property
    def flagged(self) -> list[str]:
        return [name for name, feature in self.features.items() if feature.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_parent": self.n_parent,
            "threshold": self.threshold,
            "share_kind": self.share_kind,
            "joint_r2": clean(self.joint_r2),
            "flagged": self.flagged,
            "features": {name: feature.to_dict() for name, feature in self.features.items()},
        }


def _univariate(feature: np.ndarray, rewards: np.ndarray) -> tuple[float, float]:
    """(R^2, p-value) of reward ~ feature; a constant feature or reward explains nothing."""
    if feature.size < 3 or np.ptp(feature) == 0 or np.ptp(rewards) == 0:
        return 0.0, 1.0
    result = stats.pearsonr(feature, rewards)
    return float(result.statistic) ** 2, float(result.pvalue)


def _partial_r2(matrix: np.ndarray, rewards: np.ndarray) -> tuple[float | None, list[float | None]]:
    """Joint R^2 and each feature's partial R^2 ((SSE_without - SSE_full) / SSE_without)."""
    from sklearn.linear_model import LinearRegression

    n, width = matrix.shape
    varying = [j for j in range(width) if np.ptp(matrix[:, j]) > 0]
    partial: list[float | None] = [0.0 if j not in varying else None for j in range(width)]
    if not varying or np.ptp(rewards) == 0 or n <= len(varying) + 1:
        return None, partial

    def sse(columns: list[int]) -> float:
        if not columns:
            return float(np.sum((rewards - rewards.mean()) ** 2))
        model = LinearRegression().fit(matrix[:, columns], rewards)
        return float(np.sum((rewards - model.predict(matrix[:, columns])) ** 2))

    total = float(np.sum((rewards - rewards.mean()) ** 2))
    full = sse(varying)
    for j in varying:
        without = sse([k for k in varying if k != j])
        partial[j] = max(0.0, (without - full) / without) if without > 0 else 0.0
    return max(0.0, 1.0 - full / total), partial


def _quantile_groups(rewards: np.ndarray, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the high- and low-reward replies (at least one each, disjoint when possible)."""
    order = np.argsort(rewards, kind="stable")
    size = max(1, int(round(quantile * rewards.size)))
    low, high = np.zeros(rewards.size, bool), np.zeros(rewards.size, bool)
    low[order[:size]] = True
    high[order[-size:]] = True
    return high, low


def _check_rewards(replies: Sequence[str], rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(rewards, dtype=float).reshape(-1)
    if values.size != len(replies):
        raise ValueError(f"rewards: {values.size} values for {len(replies)} replies (one reward per reply)")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"rewards[{int(bad[0])}]: not a finite number ({values[bad[0]]})")
    return values


def _moved_with_the_lean(difference: Estimate, column: np.ndarray, rewards: np.ndarray) -> bool:
    """The child moved the feature (CI excluding 0) in the direction the reward pays for it."""
    lean = float(np.cov(column, rewards)[0, 1])
    return bool(difference.excludes(0.0) and lean * (difference.value or 0.0) > 0)


def style_monitor(
    replies: Sequence[str],
    rewards: Sequence[float] | np.ndarray,
    parent_replies: Sequence[str] | None = None,
    settings: EvaluateConfig | None = None,
) -> StyleReport:
    """Style figures of the policy's ``replies`` scored ``rewards`` (see the module docstring)."""
    settings = settings or EvaluateConfig()
    values = _check_rewards(replies, rewards)
    names, matrix = feature_matrix(replies, settings)
    parent_matrix = feature_matrix(parent_replies, settings)[1] if parent_replies is not None else None
    joint_r2, partial = _partial_r2(matrix, values) if len(replies) else (None, [None] * len(names))
    high, low = _quantile_groups(values, settings.style_quantile) if len(replies) else (None, None)
    enough = len(replies) >= settings.style_min_replies
    confidence, resamples = settings.confidence, settings.bootstrap
    features: dict[str, StyleFeatureStats] = {}
    for j, name in enumerate(names):
        column = matrix[:, j]
        seed = settings.seed + j
        r2, p_value = _univariate(column, values)
        share = r2 if settings.style_share == "univariate" else partial[j]
        flagged = bool(enough and share is not None and share > settings.style_variance_threshold
                       and p_value < settings.style_alpha)
        parent_mean = difference = None
        if parent_matrix is not None:
            parent_mean = bootstrap_mean(parent_matrix[:, j], confidence, resamples, seed)
            difference = bootstrap_mean_difference(column, parent_matrix[:, j], confidence, resamples, seed)
            flagged = flagged and _moved_with_the_lean(difference, column, values)
        features[name] = StyleFeatureStats(
            name=name,
            mean=bootstrap_mean(column, confidence, resamples, seed),
            high_reward_mean=float(column[high].mean()) if high is not None else None,
            low_reward_mean=float(column[low].mean()) if low is not None else None,
            high_minus_low=(bootstrap_mean_difference(column[high], column[low], confidence, resamples, seed)
                            if high is not None else None),
            r2=r2,
            p_value=p_value,
            partial_r2=partial[j],
            share=share,
            flagged=flagged,
            parent_mean=parent_mean,
            child_minus_parent=difference,
        )
    return StyleReport(
        n=len(replies),
        n_parent=None if parent_replies is None else len(parent_replies),
        threshold=settings.style_variance_threshold,
        share_kind=settings.style_share,
        joint_r2=joint_r2,
        features=features,
    )

