"""Phase II on real MiniLM embeddings: the kept share covers the prompts better than a random
sample of the same size, clusters are assigned, and the embedding cache is reused."""

from __future__ import annotations

import numpy as np
import pytest

from characterflywheel.curate.diversity import (
    DIVERSE_FILENAME,
    k_center_greedy,
    largest_remainder_quotas,
    nearest_distances,
    run_diversity,
)
from characterflywheel.curate.embedding import EmbeddingCache
from characterflywheel.curate.prompts import explode_prompts
from characterflywheel.curate.records import read_prompt_records, write_jsonl
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.data import read_conversations


def test_k_center_greedy_is_a_cover_no_worse_than_twice_optimal_on_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 16))
    points = np.concatenate([c + 0.01 * rng.normal(size=(40, 16)) for c in centers])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    chosen = k_center_greedy(points, 5, seed=1)
    assert len(set(chosen.tolist())) == 5
    assert nearest_distances(points, points[chosen]).max() < 0.01  # one pick per blob


def test_quotas_are_proportional_and_sum_to_total():
    quotas = largest_remainder_quotas(np.array([10, 5, 1]), 8)
    assert quotas.sum() == 8 and quotas[0] >= quotas[1] >= quotas[2] and (quotas <= [10, 5, 1]).all()


@pytest.fixture(scope="module")
def diversity_cache(embedding_cache_dir):
    return embedding_cache_dir  # persistent: the chit-chat messages are embedded once per machine


@pytest.mark.slow
@pytest.mark.parametrize("method", ["k_center", "cluster"])
def test_selection_covers_better_than_random_on_real_prompts(method, embedder, chitchat_parquet, diversity_cache,
                                                             tmp_path):
    records = list(explode_prompts(read_conversations(chitchat_parquet), 4))
    write_jsonl(tmp_path / "clean.jsonl", records)
    settings = CurateConfig(keep_share=0.3, clusters=5, diversity_method=method)
    report = run_diversity(tmp_path / "clean.jsonl", tmp_path / "out", settings, embedder, cache_dir=diversity_cache)
    kept = list(read_prompt_records(tmp_path / "out" / DIVERSE_FILENAME))
    assert len(kept) == report.kept == round(0.3 * len(records)) and report.kept + report.dropped == len(records)
    assert {r["cluster"] for r in kept} == set(range(5))
    coverage = report.coverage
    assert coverage["max_distance"] < coverage["random_max_distance"], coverage
    assert coverage["mean_distance"] < coverage["random_mean_distance"], coverage

    again = run_diversity(tmp_path / "clean.jsonl", tmp_path / "again", settings, embedder, cache_dir=diversity_cache)
    assert again.embedded_messages == 0 and again.cache_hits > 0  # all from the disk cache
    assert list(read_prompt_records(tmp_path / "again" / DIVERSE_FILENAME)) == kept  # deterministic


@pytest.mark.slow
def test_cache_returns_the_embedders_unit_vectors(embedder, tmp_path):
    cache = EmbeddingCache(embedder, tmp_path)
    texts = ["hello there", "how was your day?", "hello there"]
    vectors = cache.embed(texts)
    assert vectors.shape == (3, 384) and cache.computed == 2
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    direct = embedder.encode(["how was your day?"], normalize_embeddings=True)
    assert np.allclose(vectors[1], direct[0], atol=1e-5)
    fresh = EmbeddingCache(embedder, tmp_path)
    assert np.allclose(fresh.embed(texts), vectors) and fresh.computed == 0
