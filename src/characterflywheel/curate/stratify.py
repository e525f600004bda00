"""Phase III: a sample whose distributions over several dimensions at once match targets.

Dimensions (``settings.strata``): ``character_id``; ``depth_bucket`` (user turns so far, bucketed
by ``settings.depth_buckets``, e.g. ``1``, ``2-3``, ``4-7``, ``8+``); ``cluster`` (the Phase II
topic); ``outcome`` (``thumbs_up``, ``thumbs_down``, else ``continued``/``left`` from the continue
signal, ``unknown`` when there is none). Targets: ``settings.strata_targets[dimension]`` maps values
to weights (normalised; an observed value left out gets 0); a dimension without targets is uniform
over its observed values. A target on a value that is never observed cannot be met: it stays in
the total-variation figure.

Methods (``settings.stratify_method``):

* ``greedy`` (default): deficit filling. Records are grouped by their combination of values; each
  step takes a random not-yet-taken record from the combination whose values have the largest
  summed deficit ``target share x n - count so far`` over all dimensions. Exact on the marginals
  whenever the data allows, and it handles scarce strata (it takes all of a rare stratum before
  overshooting elsewhere). O(n x combinations) in numpy.
* ``raking``: iterative proportional fitting of per-record weights to the target marginals (the
  survey-statistics standard), then weighted sampling without replacement (Efraimidis-Spirakis
  keys). Matches well when the sample is a small share of the data; degrades as it approaches it.

Both are seeded. The report gives per dimension the target, input, achieved and random-sample
distributions and total-variation distances ``TV = 1/2 sum |p - q|`` for each against the target.
Written here because neither scikit-learn nor scipy has multi-dimensional stratified sampling;
``samplics``-style raking packages are not dependencies and the algorithms are a few lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from characterflywheel import artifacts
from characterflywheel.curate.records import read_prompt_records, write_json, write_jsonl
from characterflywheel.curate.settings import CurateConfig

STRATIFY_REPORT_FILENAME = "stratify_report.json"


def depth_bucket(depth: int, edges: Sequence[int]) -> str:
    """``depth`` in the bucket of sorted lower ``edges``: [1, 2, 4, 8] -> 1, 2-3, 4-7, 8+."""
    edges = sorted(edges)
    for index, low in enumerate(edges):
        high = edges[index + 1] - 1 if index + 1 < len(edges) else None
        if depth >= low and (high is None or depth <= high):
            if high is None:
                return f"{low}+"
            return str(low) if high == low else f"{low}-{high}"
    return f"<{edges[0]}"


def outcome(record: Mapping[str, Any]) -> str:
    if record.get("thumbs") == "up":
        return "thumbs_up"
    if record.get("thumbs") == "down":
        return "thumbs_down"
    continued = record.get("continued")
    return "unknown" if continued is None else ("continued" if continued else "left")


def stratum_value(record: Mapping[str, Any], dimension: str, edges: Sequence[int]) -> str:
    if dimension == "depth_bucket":
        return depth_bucket(int(record["depth"]), edges)
    if dimension == "outcome":
        return outcome(record)
    if dimension in ("character_id", "cluster"):
        value = record.get(dimension)
        if value is None:
            raise ValueError(f"record {record.get('prompt_id')!r}: {dimension}: missing (run Phase II first for cluster)")
        return str(value)
    raise ValueError(f"strata: unknown dimension {dimension!r}")


def distribution(values: Sequence[str]) -> dict[str, float]:
    counts = Counter(values)
    total = sum(counts.values())
    return {value: count / total for value, count in sorted(counts.items())} if total else {}


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    return 0.5 * sum(abs(p.get(key, 0.0) - q.get(key, 0.0)) for key in set(p) | set(q))


def target_distribution(observed: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    """Normalised target over values: the given weights, or uniform over observed values."""
    if not weights:
        values = sorted(set(observed))
        return {value: 1.0 / len(values) for value in values} if values else {}
    total = sum(weights.values())
    if total <= 0 or any(weight < 0 for weight in weights.values()):
        raise ValueError(f"strata_targets: weights must be >= 0 with a positive sum, got {dict(weights)}")
    return {str(value): weight / total for value, weight in sorted(weights.items())}


def greedy_sample(columns: np.ndarray, targets: list[np.ndarray], n: int, seed: int = 0) -> np.ndarray:
    """Deficit filling: ``columns`` (records x dims) of value codes, ``targets[d]`` the target
    shares of dim d's codes; returns ``n`` record indices."""
    rng = np.random.default_rng(seed)
    combos, inverse = np.unique(columns, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(combos))]
    available = np.array([len(m) for m in members])
    taken = np.zeros(len(combos), dtype=np.int64)
    counts = [np.zeros(len(t)) for t in targets]
    jitter = rng.random(len(combos)) * 1e-9  # seeded tie-breaking
    chosen = np.empty(min(n, len(columns)), dtype=np.int64)
    for step in range(len(chosen)):
        score = jitter.copy()
        for d, target in enumerate(targets):
            score += (target * n - counts[d])[combos[:, d]] / max(n, 1)
        score[taken >= available] = -np.inf
        combo = int(np.argmax(score))
        chosen[step] = members[combo][taken[combo]]
        taken[combo] += 1
        for d in range(len(targets)):
            counts[d][combos[combo, d]] += 1
    return chosen


def raking_sample(columns: np.ndarray, targets: list[np.ndarray], n: int, seed: int = 0,
                  iterations: int = 100) -> np.ndarray:
    """IPF weights to the target marginals, then weighted sampling without replacement."""
    weights = np.ones(len(columns))
    for _ in range(iterations):
        for d, target in enumerate(targets):
            share = np.bincount(columns[:, d], weights=weights, minlength=len(target)) / weights.sum()
            factor = np.divide(target, share, out=np.zeros_like(target), where=share > 0)
            weights *= factor[columns[:, d]]
            if weights.sum() == 0:
                raise ValueError("strata_targets: the targets leave no record with a positive weight")
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore"):
        keys = np.log(rng.random(len(columns))) / weights  # Efraimidis-Spirakis, in log space
    return np.argsort(-keys, kind="stable")[: min(n, len(columns))]


@dataclass
class StratifyReport:
    records_in: int = 0
    kept: int = 0
    dropped: int = 0
    method: str = ""
    dimensions: dict[str, dict[str, Any]] = field(default_factory=dict)
    mean_tv: float = 0.0
    random_mean_tv: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stratify(records: Sequence[dict[str, Any]], settings: CurateConfig,
             seed: int = 0) -> tuple[list[dict[str, Any]], StratifyReport]:
    """(sampled records, report); at most ``settings.max_prompts`` records."""
    report = StratifyReport(records_in=len(records), method=settings.stratify_method)
    n = min(settings.max_prompts, len(records))
    if n == 0:
        return [], report
    dimensions = list(settings.strata)
    values = {d: [stratum_value(r, d, settings.depth_buckets) for r in records] for d in dimensions}
    targets = {d: target_distribution(values[d], settings.strata_targets.get(d)) for d in dimensions}
    codes = {d: {value: i for i, value in enumerate(sorted(set(values[d]) | set(targets[d])))} for d in dimensions}
    columns = np.array([[codes[d][v] for v in values[d]] for d in dimensions], dtype=np.int64).T.reshape(len(records), -1)
    target_arrays = [np.array([targets[d].get(v, 0.0) for v in codes[d]]) for d in dimensions]
    if not dimensions:
        chosen = np.random.default_rng(seed).choice(len(records), size=n, replace=False)
    elif settings.stratify_method == "greedy":
        chosen = greedy_sample(columns, target_arrays, n, seed)
    else:
        chosen = raking_sample(columns, target_arrays, n, seed)
    chosen = np.sort(chosen)
    random_pick = np.random.default_rng(seed + 1).choice(len(records), size=n, replace=False)
    for d in dimensions:
        achieved = distribution([values[d][i] for i in chosen])
        random_dist = distribution([values[d][i] for i in random_pick])
        report.dimensions[d] = {
            "target": targets[d], "input": distribution(values[d]), "achieved": achieved, "random": random_dist,
            "tv": total_variation(achieved, targets[d]), "random_tv": total_variation(random_dist, targets[d]),
            "input_tv": total_variation(distribution(values[d]), targets[d]),
        }
    if dimensions:
        report.mean_tv = float(np.mean([report.dimensions[d]["tv"] for d in dimensions]))
        report.random_mean_tv = float(np.mean([report.dimensions[d]["random_tv"] for d in dimensions]))
    kept = [records[i] for i in chosen]
    report.kept, report.dropped = len(kept), len(records) - len(kept)
    return kept, report


def run_stratify(input_path: Path, out_dir: Path, settings: CurateConfig, *, seed: int = 0,
                 progress: bool = False) -> StratifyReport:
    """``diverse.jsonl`` -> ``out_dir/stratified.jsonl`` (the curated prompts) + ``stratify_report.json``."""
    out_dir = Path(out_dir)
    records = list(read_prompt_records(input_path))
    try:
        kept, report = stratify(records, settings, seed)
    except ValueError as error:
        raise ValueError(f"{input_path}: {error}") from None
    write_jsonl(out_dir / artifacts.STRATIFIED, kept)
    write_json(out_dir / STRATIFY_REPORT_FILENAME, report.to_json())
    return report
