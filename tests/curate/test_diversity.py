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


@pytest.mark.slow
def test_the_same_line_said_to_two_characters_is_two_prompts(embedder, diversity_cache, tmp_path):
    """Ten users open with "Hello?" to the captain, ten topical lines go to five other characters: across
    characters the greetings are one point and one survives; within characters the captain keeps half of
    his prompts, like everyone else."""
    topics = ["my sourdough starter died again", "which telescope should I buy", "my cat knocks cups off tables",
              "is chess or go harder", "I failed my driving test", "best way to learn the cello",
              "my tomatoes keep splitting", "should I quit my job", "the ocean scares me a little",
              "what was rome like at night"]
    def record(prompt_id: str, character: str, line: str) -> dict:
        return {"prompt_id": prompt_id, "conversation_id": prompt_id, "user_id": f"user-{prompt_id}",
                "character_id": character, "model_version": "gen-0", "arm": None, "depth": 1,
                "prompt": [{"role": "user", "content": line}], "reply": "Ahoy.", "continued": True, "thumbs": None}

    records = [record(f"hello-{i}", "captain-saltbeard", "Hello?") for i in range(10)]
    records += [record(f"topic-{i}", f"character-{i // 2}", topic) for i, topic in enumerate(topics)]
    write_jsonl(tmp_path / "clean.jsonl", records)

    def kept_greetings(within: bool) -> tuple[int, dict[str, int]]:
        settings = CurateConfig(keep_share=0.5, clusters=3, diversity_within_character=within)
        run_diversity(tmp_path / "clean.jsonl", tmp_path / str(within), settings, embedder, cache_dir=diversity_cache)
        kept = list(read_prompt_records(tmp_path / str(within) / DIVERSE_FILENAME))
        per_character: dict[str, int] = {}
        for record in kept:
            per_character[record["character_id"]] = per_character.get(record["character_id"], 0) + 1
        return sum(record["prompt_id"].startswith("hello") for record in kept), per_character

    across, _ = kept_greetings(False)
    within, per_character = kept_greetings(True)
    assert across == 1
    assert within == 5 and per_character == {"captain-saltbeard": 5, **{f"character-{i}": 1 for i in range(5)}}
