"""Curate fixtures: a small real traffic set (ingested chit-chat), a fitted safety classifier and an
embedding cache that persists between test sessions (so the classifier's ~1,600 training sentences
are embedded once per machine, not once per run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from characterflywheel.data import ingest, write_seed_traffic


@pytest.fixture(scope="session")
def embedding_cache_dir() -> Path:
    root = Path(os.environ.get("CHARACTERFLYWHEEL_CACHE") or Path.home() / ".cache" / "characterflywheel")
    return root / "test-embeddings"


@pytest.fixture(scope="session")
def embedding_cache(embedder, embedding_cache_dir):
    from characterflywheel.curate.embedding import EmbeddingCache

    return EmbeddingCache(embedder, embedding_cache_dir)


@pytest.fixture(scope="session")
def safety_classifier(embedding_cache):
    from characterflywheel.curate.safety import SafetyClassifier

    return SafetyClassifier(embedding_cache).fit()


@pytest.fixture(scope="session")
def chitchat_parquet(tmp_path_factory) -> Path:
    """40 real chit-chat conversations (two-sided ones), ingested."""
    folder = tmp_path_factory.mktemp("chitchat")
    write_seed_traffic(folder / "traffic.jsonl", limit=40, two_speaker_only=True)
    ingest([folder / "traffic.jsonl"], folder / "ingested")
    return folder / "ingested" / "conversations.parquet"
