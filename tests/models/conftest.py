"""Fixtures for the models tests.

* ``tiny_llama_dir`` / ``tiny_policy``: a randomly initialised 2-layer LLaMA with a small
  byte-level BPE tokenizer and the ChatML template, saved as an ordinary HF folder. It runs
  the generation backends in milliseconds and exercises the "any LLaMA folder" path.
* ``embedded_cache`` / ``embedded_policy_dir``: the real SmolLM2 GGUF converted ONCE per
  session into a temporary cache root, so tests never touch the user's cache.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from models_fixtures import build_tiny_llama, build_tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    build_tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_policy(tiny_llama_dir: Path):
    from characterflywheel.models import load_policy

    return load_policy(tiny_llama_dir)


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache root holding the real SmolLM2 conversion (about 25 s, once per session).
    Tests that resolve ``embedded:`` names point ``CHARACTERFLYWHEEL_CACHE`` here."""
    from characterflywheel.models import embedded

    root = tmp_path_factory.mktemp("cfw-cache")
    embedded.ensure_converted(embedded.SMOLLM2, root=root)
    return root


@pytest.fixture(scope="session")
def embedded_policy_dir(embedded_cache: Path) -> Path:
    from characterflywheel.models import embedded

    return embedded.converted_folder(embedded.SMOLLM2, embedded_cache)


@pytest.fixture(scope="session")
def embedded_policy(embedded_policy_dir: Path):
    from characterflywheel.models import load_policy

    return load_policy(embedded_policy_dir)
