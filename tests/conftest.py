"""Shared fixtures: the real embedded embedder, loaded once per session (offline)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def embedder():
    from characterflywheel.models import load_embedder

    return load_embedder()
