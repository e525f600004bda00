"""Phase II: keep a diverse share of the prompts and give each a topic cluster.

Each prompt is embedded as its last user line plus a little context: the unit vector of
``e(last user line) + context_weight * mean(e(previous context_messages messages))`` where ``e``
is MiniLM on single messages through ``EmbeddingCache`` (one-sentence messages that Phase I
embedded for the safety check, and any message seen in an earlier run, cost nothing here).
Averaging message vectors rather than embedding a concatenation keeps the last user line dominant
and lets the cache work per message: a message shared by many prompts' histories is embedded once.

Selection (``settings.diversity_method``), on cosine distance ``1 - u.v``:

* ``k_center``: greedy farthest-point traversal (Gonzalez 1985; the "core-set" selection of Sener &
  Savarese 2018): start from a seeded random prompt, repeatedly add the prompt farthest from
  everything chosen. A 2-approximation of the smallest covering radius. O(n k d) in numpy, with
  in-place distance updates (a few seconds for n = 10^4, k = 5 * 10^3). Written here because
  scikit-learn has no k-center and faiss is not a dependency.
* ``cluster``: KMeans (scikit-learn) into ``clusters`` topics, a quota per cluster in proportion to
  its size (largest remainders), k-center inside each cluster: representative of the topic mix and
  covering within topics; faster for large n.

With ``diversity_within_character`` (the default) either method runs inside each character's
prompts, a quota per character in proportion to its prompts (largest remainders): a prompt is a
character and a conversation, and the vectors above read only the conversation, so "Hello?" said
to 23 characters was one point and 44 of 49 greetings went (in a demo window, where greetings are a
quarter of the traffic and each is where a user decides to stay or leave).

Every kept record gets ``cluster``: its KMeans topic (``clusters`` clusters fit on all prompts, so
Phase III can balance topics). Coverage report: the mean and max distance of every prompt to its
nearest kept prompt, for the selection and for a seeded uniform random sample of the same size,
and their ratios (below 1: the selection covers better).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from characterflywheel.curate.embedding import EmbeddingCache
from characterflywheel.curate.records import read_prompt_records, write_json, write_jsonl
from characterflywheel.curate.settings import CurateConfig

DIVERSE_FILENAME = "diverse.jsonl"
DIVERSITY_REPORT_FILENAME = "diversity_report.json"
CONTEXT_WEIGHT = 0.5
_CHUNK = 4096


@dataclass
class DiversityReport:
    records_in: int = 0
    kept: int = 0
    dropped: int = 0
    method: str = ""
    clusters: int = 0
    cluster_sizes: dict[str, int] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)
    embedded_messages: int = 0
    cache_hits: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def prompt_vectors(records: Sequence[dict[str, Any]], cache: EmbeddingCache, context_messages: int = 1,
                   context_weight: float = CONTEXT_WEIGHT) -> np.ndarray:
    """(n, d) unit vectors: the last user line plus ``context_weight`` x the mean of its context."""
    last_users, contexts = [], []
    for record in records:
        dialogue = [m["content"] for m in record["prompt"] if m["role"] != "system"]
        last_users.append(dialogue[-1])
        contexts.append(dialogue[max(0, len(dialogue) - 1 - context_messages): len(dialogue) - 1])
    if not records:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = cache.embed(last_users).astype(np.float32)
    flat = [text for context in contexts for text in context]
    if flat and context_weight > 0:
        context_vectors = cache.embed(flat)
        position = 0
        for index, context in enumerate(contexts):
            if context:
                vectors[index] += context_weight * context_vectors[position: position + len(context)].mean(axis=0)
                position += len(context)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def nearest_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Cosine distance of each point to its nearest center (chunked, O(chunk x k) memory)."""
    result = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), _CHUNK):
        similarity = points[start: start + _CHUNK] @ centers.T
        result[start: start + _CHUNK] = 1.0 - similarity.max(axis=1)
    return np.clip(result, 0.0, 2.0)


def k_center_greedy(vectors: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` points chosen by farthest-point traversal (first one seeded at random)."""
    n = len(vectors)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = np.random.default_rng(seed).integers(n)
    distance = 1.0 - vectors @ vectors[chosen[0]]
    for step in range(1, k):
        chosen[step] = int(np.argmax(distance))
        np.minimum(distance, 1.0 - vectors @ vectors[chosen[step]], out=distance)
        distance[chosen[step]] = -1.0  # never picked again, even with duplicates at distance 0
    return chosen


def largest_remainder_quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas proportional to ``sizes`` summing to ``total`` (each at most its size)."""
    raw = sizes / sizes.sum() * total
    quotas = np.minimum(np.floor(raw).astype(np.int64), sizes)
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    index = 0
    while quotas.sum() < total:
        cluster = order[index % len(order)]
        if quotas[cluster] < sizes[cluster]:
            quotas[cluster] += 1
        index += 1
    return quotas


def fit_clusters(vectors: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """KMeans topic labels for every vector (k capped at the number of vectors)."""
    k = max(1, min(clusters, len(vectors)))
    model = KMeans(n_clusters=k, n_init=3, random_state=seed)
    return model.fit_predict(vectors).astype(np.int64)


def select_diverse(vectors: np.ndarray, keep: int, method: str, labels: np.ndarray, seed: int = 0,
                   groups: Sequence[str] | None = None) -> np.ndarray:
    """Sorted indices of the ``keep`` selected vectors; with ``groups``, selected inside each group
    (a quota per group in proportion to its size)."""
    if groups is not None:
        names = np.asarray([str(group) for group in groups])
        members = [np.flatnonzero(names == name) for name in sorted(set(names.tolist()))]
        quotas = largest_remainder_quotas(np.array([len(m) for m in members]), keep)
        chosen = [m[select_diverse(vectors[m], int(q), method, labels[m], seed)]
                  for m, q in zip(members, quotas) if q > 0]
        return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    if method == "k_center":
        return np.sort(k_center_greedy(vectors, keep, seed))
    if method == "cluster":
        members = [np.flatnonzero(labels == c) for c in np.unique(labels)]  # a group's subset: no empty cluster
        sizes = np.array([len(m) for m in members])
        quotas = largest_remainder_quotas(sizes, keep)
        chosen = [m[k_center_greedy(vectors[m], int(q), seed)] for m, q in zip(members, quotas) if q > 0]
        return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    raise ValueError(f"diversity_method: unknown method {method!r} (k_center or cluster)")


def coverage_report(vectors: np.ndarray, selected: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Mean/max distance of all points to the nearest selected one, against a random sample."""
    if len(selected) == 0:
        return {}
    random_pick = np.random.default_rng(seed + 1).choice(len(vectors), size=len(selected), replace=False)
    ours = nearest_distances(vectors, vectors[selected])
    baseline = nearest_distances(vectors, vectors[random_pick])
    return {
        "mean_distance": float(ours.mean()), "max_distance": float(ours.max()),
        "random_mean_distance": float(baseline.mean()), "random_max_distance": float(baseline.max()),
        "mean_ratio": float(ours.mean() / max(baseline.mean(), 1e-12)),
        "max_ratio": float(ours.max() / max(baseline.max(), 1e-12)),
    }


def diversify(records: Sequence[dict[str, Any]], cache: EmbeddingCache, settings: CurateConfig,
              seed: int = 0) -> tuple[list[dict[str, Any]], DiversityReport]:
    """(kept records with ``cluster``, report)."""
    report = DiversityReport(records_in=len(records), method=settings.diversity_method)
    if not records:
        return [], report
    before_hits, before_computed = cache.hits, cache.computed
    vectors = prompt_vectors(records, cache, settings.context_messages)
    report.embedded_messages = cache.computed - before_computed
    report.cache_hits = cache.hits - before_hits
    labels = fit_clusters(vectors, settings.clusters, seed)
    keep = max(1, int(round(settings.keep_share * len(records))))
    groups = [str(record.get("character_id")) for record in records] if settings.diversity_within_character else None
    selected = select_diverse(vectors, keep, settings.diversity_method, labels, seed, groups)
    kept = [{**records[i], "cluster": int(labels[i])} for i in selected]
    report.kept, report.dropped = len(kept), len(records) - len(kept)
    report.clusters = int(labels.max()) + 1
    sizes = np.bincount(labels[selected], minlength=report.clusters)
    report.cluster_sizes = {str(c): int(s) for c, s in enumerate(sizes)}
    report.coverage = coverage_report(vectors, selected, seed)
    return kept, report


def run_diversity(input_path: Path, out_dir: Path, settings: CurateConfig, embedder: Any, *,
                  cache_dir: Path | None = None, seed: int = 0, progress: bool = False) -> DiversityReport:
    """``clean.jsonl`` -> ``out_dir/diverse.jsonl`` + ``diversity_report.json``."""
    out_dir = Path(out_dir)
    records = list(read_prompt_records(input_path))
    cache = EmbeddingCache(embedder, cache_dir, batch_size=settings.embed_batch_size,
                           max_chars=settings.embed_max_chars, progress=progress)
    kept, report = diversify(records, cache, settings, seed)
    write_jsonl(out_dir / DIVERSE_FILENAME, kept)
    write_json(out_dir / DIVERSITY_REPORT_FILENAME, report.to_json())
    return report
