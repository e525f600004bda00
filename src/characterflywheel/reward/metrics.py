"""Held-out metrics for the reward models.

AUC and Spearman come from scikit-learn / scipy. The expected calibration error (ECE) is written
here because scikit-learn's ``calibration_curve`` drops the bin sizes ECE needs: predictions are
put in ``bins`` equal-width bins of [0, 1] and ECE = sum over bins of (bin share) x |mean label -
mean prediction|. Every metric is ``None`` (JSON null) when it is undefined or meaningless rather than
a made-up number: no examples; for AUC fewer than ``MIN_PER_CLASS`` examples of either class (an AUC of
0.000 from one pair says nothing); for Spearman fewer than ``MIN_PER_CLASS`` points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score


def expected_calibration_error(probabilities: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray,
                               bins: int = 10) -> float | None:
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels, dtype=float)
    if p.size == 0:
        return None
    index = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            error += inside.mean() * abs(y[inside].mean() - p[inside].mean())
    return float(error)


MIN_PER_CLASS = 5


def auc(probabilities: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray) -> float | None:
    y = np.asarray(labels, dtype=int)
    if min(int((y == 1).sum()), int((y == 0).sum())) < MIN_PER_CLASS:
        return None
    return float(roc_auc_score(y, np.asarray(probabilities, dtype=float)))


def accuracy(probabilities: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray) -> float | None:
    """Share of examples on the right side of 0.5; an exact 0.5 counts as half right."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels, dtype=float)
    if p.size == 0:
        return None
    right = np.where(p == 0.5, 0.5, ((p > 0.5) == (y > 0.5)).astype(float))
    return float(right.mean())


def spearman(scores: Sequence[float] | np.ndarray, targets: Sequence[float] | np.ndarray) -> float | None:
    s = np.asarray(scores, dtype=float)
    t = np.asarray(targets, dtype=float)
    if s.size < MIN_PER_CLASS or np.all(s == s[0]) or np.all(t == t[0]):
        return None
    value = float(spearmanr(s, t).statistic)
    return value if math.isfinite(value) else None


def mean_absolute_error(predictions: Sequence[float] | np.ndarray, targets: Sequence[float] | np.ndarray) -> float | None:
    p = np.asarray(predictions, dtype=float)
    if p.size == 0:
        return None
    return float(np.abs(p - np.asarray(targets, dtype=float)).mean())


def brier(probabilities: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray) -> float | None:
    p = np.asarray(probabilities, dtype=float)
    if p.size == 0:
        return None
    return float(((p - np.asarray(labels, dtype=float)) ** 2).mean())


def binary_report(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """accuracy, AUC, ECE, Brier, base rate and count for one binary prediction."""
    return {"accuracy": accuracy(probabilities, labels), "auc": auc(probabilities, labels),
            "ece": expected_calibration_error(probabilities, labels), "brier": brier(probabilities, labels),
            "base_rate": float(np.mean(labels)) if len(labels) else None, "count": int(len(labels))}
