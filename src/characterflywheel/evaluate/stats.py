"""Estimates with confidence intervals, shared by every evaluation module.

``Estimate`` is a measured value with its interval and sample size (NaN where undefined), as the
offline report, the history-bias monitor and the style monitor write them. scipy supplies the
percentile bootstrap (``scipy.stats.bootstrap``) and the Wilson interval
(``binomtest(...).proportion_ci``); the Newcombe interval for a difference of two proportions
(hybrid Wilson score, Newcombe 1998, method 10) is in neither scipy nor scikit-learn, so it is built
here from the two Wilson intervals. ``clustered_rate`` and ``paired_rate_difference`` resample clusters
(prompts) by hand: their statistic is a ratio of sums, and a resample whose clusters hold no trials
has no rate, which ``scipy.stats.bootstrap`` would turn into a NaN interval instead of dropping it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["Estimate", "bootstrap_mean", "bootstrap_mean_difference", "clean", "clustered_rate", "newcombe_difference",
           "paired_rate_difference", "paired_z", "wilson"]



def clean(value: float | None) -> float | None:
    """A float for JSON: None where undefined (NaN or infinite)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Estimate:
    """A measured value with its confidence interval and sample size (NaN: undefined)."""

    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {"value": clean(self.value), "lo": clean(self.lo), "hi": clean(self.hi), "n": int(self.n)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        def number(key: str) -> float:
            value = data.get(key)
            return math.nan if value is None else float(value)

        return cls(number("value"), number("lo"), number("hi"), int(data.get("n") or 0))

    def excludes(self, point: float) -> bool:
        """True when the whole interval lies on one side of ``point``."""
        return (self.lo > point or self.hi < point) if math.isfinite(self.lo) and math.isfinite(self.hi) else False


_NAN = math.nan


def _undefined(n: int, value: float = _NAN) -> Estimate:
    return Estimate(value, _NAN, _NAN, n)


def bootstrap_mean(values: Sequence[float] | np.ndarray, confidence: float = 0.95, resamples: int = 1000,
                   seed: int = 0) -> Estimate:
    """Mean with a percentile-bootstrap CI over the items."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return _undefined(0)
    mean = float(data.mean())
    if data.size < 2:
        return _undefined(1, mean)
    if np.all(data == data[0]):
        return Estimate(mean, mean, mean, int(data.size))
    result = stats.bootstrap((data,), np.mean, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return Estimate(mean, float(interval.low), float(interval.high), int(data.size))


MAX_Z = 1e3


def paired_z(differences: Sequence[float] | np.ndarray, model_se: float = 0.0) -> float | None:
    """The mean of paired per-item differences over its standard error (a one-sample t statistic);
    0 when every difference is 0, clipped to +-``MAX_Z`` (the same non-zero difference everywhere; JSON
    has no infinity), None with fewer than two items. ``model_se``: the standard error the scorer itself
    adds to that mean (a model fitted on few rows; its bootstrap spread), added in quadrature to the
    items' one, since a scorer's error is shared by every item and averaging items cannot remove it.
    Independent proxies' z values add up Stouffer's way (``evidence_vs_parent`` in the offline report)."""
    data = np.asarray(differences, dtype=float)
    data = data[np.isfinite(data)]
    if data.size < 2:
        return None
    error = math.hypot(float(data.std(ddof=1)) / math.sqrt(data.size), float(model_se))
    if error == 0.0:
        return 0.0 if float(data.mean()) == 0.0 else math.copysign(MAX_Z, float(data.mean()))
    return float(np.clip(float(data.mean()) / error, -MAX_Z, MAX_Z))


def _mean_difference(first: np.ndarray, second: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(first, axis=axis) - np.mean(second, axis=axis)


def bootstrap_mean_difference(first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray,
                              confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> Estimate:
    """mean(first) - mean(second) of two independent samples, percentile-bootstrap CI; n = both sizes."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    n = int(a.size + b.size)
    if a.size == 0 or b.size == 0:
        return _undefined(n)
    difference = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return _undefined(n, difference)
    if np.all(a == a[0]) and np.all(b == b[0]):
        return Estimate(difference, difference, difference, n)
    result = stats.bootstrap((a, b), _mean_difference, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return Estimate(difference, float(interval.low), float(interval.high), n)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """A proportion with its Wilson score interval."""
    if n <= 0:
        return _undefined(0)
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(successes / n, float(interval.low), float(interval.high), int(n))


def newcombe_difference(successes_a: int, n_a: int, successes_b: int, n_b: int,
                        confidence: float = 0.95) -> Estimate:
    """p_a - p_b of two independent proportions, Newcombe's hybrid Wilson score interval."""
    if n_a <= 0 or n_b <= 0:
        return _undefined(max(n_a, 0) + max(n_b, 0))
    a, b = wilson(successes_a, n_a, confidence), wilson(successes_b, n_b, confidence)
    difference = a.value - b.value
    lo = difference - math.sqrt((a.value - a.lo) ** 2 + (b.hi - b.value) ** 2)
    hi = difference + math.sqrt((a.hi - a.value) ** 2 + (b.value - b.lo) ** 2)
    return Estimate(difference, lo, hi, int(n_a + n_b))


def _resampled_rates(successes: np.ndarray, trials: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """The pooled rate of each resample of clusters (NaN where a resample holds no trials)."""
    totals = trials[picks].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, successes[picks].sum(axis=1) / totals, np.nan)


def _cluster_estimate(value: float, draws: np.ndarray, n: int, confidence: float) -> Estimate:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return _undefined(n, value)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(draws, [tail, 100.0 - tail])
    return Estimate(value, float(lo), float(hi), n)


def _cluster_counts(*arrays: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    counts = [np.asarray(values, dtype=float) for values in arrays]
    if len({values.size for values in counts}) != 1:
        raise ValueError("every array of counts needs one entry per cluster")
    return counts


def clustered_rate(successes: Sequence[int] | np.ndarray, trials: Sequence[int] | np.ndarray,
                   confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> Estimate:
    """Pooled rate sum(successes) / sum(trials) over clusters (several replies to one prompt), with a
    percentile CI from resampling clusters: replies to one prompt share its card and question, so they
    are not independent trials (Wilson's interval would treat them as such and come out too narrow).
    Where every cluster has the same rate (none kept a rule, say) resampling cannot move it, and the
    interval is Wilson's with one trial a cluster, the most cautious count, rather than a zero width.
    n = all trials."""
    s, t = _cluster_counts(successes, trials)
    n = int(t.sum())
    if n <= 0:
        return _undefined(0)
    value = float(s.sum() / t.sum())
    if s.size < 2:
        return _undefined(n, value)
    picks = np.random.default_rng(seed).integers(0, s.size, size=(resamples, s.size))
    estimate = _cluster_estimate(value, _resampled_rates(s, t, picks), n, confidence)
    if estimate.lo == estimate.hi:
        clusters = int(np.count_nonzero(t))
        cautious = wilson(round(value * clusters), clusters, confidence)
        return Estimate(value, min(cautious.lo, value), max(cautious.hi, value), n)
    return estimate


def paired_rate_difference(successes_a: Sequence[int] | np.ndarray, trials_a: Sequence[int] | np.ndarray,
                           successes_b: Sequence[int] | np.ndarray, trials_b: Sequence[int] | np.ndarray,
                           confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> Estimate:
    """Pooled rate a minus pooled rate b, both counted on the same clusters (a child's and its parent's
    replies to each prompt), resampling clusters for both at once (``clustered_rate``; the pairing
    removes the prompts' own spread from the difference). n = all trials of both sides."""
    s_a, n_a, s_b, n_b = _cluster_counts(successes_a, trials_a, successes_b, trials_b)
    n = int(n_a.sum() + n_b.sum())
    if n_a.sum() <= 0 or n_b.sum() <= 0:
        return _undefined(n)
    difference = float(s_a.sum() / n_a.sum() - s_b.sum() / n_b.sum())
    if s_a.size < 2:
        return _undefined(n, difference)
    picks = np.random.default_rng(seed).integers(0, s_a.size, size=(resamples, s_a.size))
    draws = _resampled_rates(s_a, n_a, picks) - _resampled_rates(s_b, n_b, picks)
    return _cluster_estimate(difference, draws, n, confidence)
