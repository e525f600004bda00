"""Ratio-metric statistics of an A/B test from per-user sums: delta method, CUPED, user bootstrap.

Every function works on sums of per-user columns (``y``, ``n``, their squares and cross-products,
and with CUPED the covariate ``x``), shaped ``()`` for the observed data or ``(B,)`` for B bootstrap
resamples, so the point estimate and the bootstrap share one code path. The formulas and why they
are written here rather than taken from scipy or statsmodels are in ``evaluate.ab``'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

BOOT_CELLS = 2_000_000  # multiplicity weights held at once (users x resamples)


def unpack(sums: np.ndarray, labels: Sequence[tuple[str, str]]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for j, (metric, key) in enumerate(labels):
        out.setdefault(metric, {})[key] = sums[..., j]
    return out


@dataclass(frozen=True)
class Moments:
    n: int
    ratio: np.ndarray
    var_phi: np.ndarray
    mean_x: np.ndarray | None = None
    var_x: np.ndarray | None = None
    cov_phi_x: np.ndarray | None = None


def moments(s: Mapping[str, np.ndarray], n: int) -> Moments:
    """Ratio R = sum Y / sum N and the per-user variance of its linearisation phi."""
    dof = n - 1 if n > 1 else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = s["y"] / s["n"]
        mean_n = s["n"] / n
        var_y = (s["yy"] - s["y"] ** 2 / n) / dof
        var_n = (s["nn"] - s["n"] ** 2 / n) / dof
        cov_yn = (s["yn"] - s["y"] * s["n"] / n) / dof
        var_phi = (var_y - 2 * ratio * cov_yn + ratio**2 * var_n) / mean_n**2
        if "x" not in s:
            return Moments(n, ratio, var_phi)
        var_x = (s["xx"] - s["x"] ** 2 / n) / dof
        cov_yx = (s["yx"] - s["y"] * s["x"] / n) / dof
        cov_nx = (s["nx"] - s["n"] * s["x"] / n) / dof
        cov_phi_x = (cov_yx - ratio * cov_nx) / mean_n
    return Moments(n, ratio, var_phi, s["x"] / n, var_x, cov_phi_x)


def relative_lift(
    rc: np.ndarray, vc: np.ndarray, rt: np.ndarray, vt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Relative lift R_t/R_c - 1 and its delta-method variance (independent arms)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return rt / rc - 1.0, vt / rc**2 + rt**2 * vc / rc**4


def cuped_theta(mc: Moments, mt: Moments) -> np.ndarray:
    assert mc.cov_phi_x is not None and mt.cov_phi_x is not None
    assert mc.var_x is not None and mt.var_x is not None
    wc, wt = max(mc.n - 1, 0), max(mt.n - 1, 0)
    num = np.nan_to_num(wc * mc.cov_phi_x) + np.nan_to_num(wt * mt.cov_phi_x)
    den = np.nan_to_num(wc * mc.var_x) + np.nan_to_num(wt * mt.var_x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 1e-12, num / den, 0.0)


def cuped_arm(m: Moments, theta: np.ndarray, pooled_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted ratio and its variance for one arm."""
    assert m.mean_x is not None and m.var_x is not None and m.cov_phi_x is not None
    ratio = m.ratio - theta * (m.mean_x - pooled_x)
    var_res = m.var_phi - 2 * theta * m.cov_phi_x + theta**2 * m.var_x
    return ratio, var_res / m.n


def estimates(
    sc: Mapping[str, np.ndarray], st: Mapping[str, np.ndarray], nc: int, nt: int
) -> dict[str, np.ndarray]:
    """Point estimates (and delta variances) of one metric from the two arms' sums."""
    mc, mt = moments(sc, nc), moments(st, nt)
    lift, var_lift = relative_lift(mc.ratio, mc.var_phi / nc, mt.ratio, mt.var_phi / nt)
    out = {
        "control": mc.ratio,
        "challenger": mt.ratio,
        "lift": lift,
        "var_lift": var_lift,
        "diff": mt.ratio - mc.ratio,
        "var_diff": mc.var_phi / nc + mt.var_phi / nt,
    }
    if mc.mean_x is not None and mt.mean_x is not None:
        theta = cuped_theta(mc, mt)
        pooled_x = (mc.mean_x * nc + mt.mean_x * nt) / (nc + nt)
        rc, vc = cuped_arm(mc, theta, pooled_x)
        rt, vt = cuped_arm(mt, theta, pooled_x)
        out["cuped_lift"], out["cuped_var_lift"] = relative_lift(rc, vc, rt, vt)
        out["theta"] = theta
    return out


def resample_sums(design: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of ``resamples`` bootstrap resamples of the rows: shape (resamples, k)."""
    n = design.shape[0]
    out = np.empty((resamples, design.shape[1]))
    chunk = max(1, min(resamples, BOOT_CELLS // max(n, 1)))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        picks = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        weights = np.bincount(picks.ravel(), minlength=b * n).reshape(b, n)
        out[start : start + b] = weights @ design
    return out
