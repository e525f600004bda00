"""Fixture data for the reward tests (see world.py), built once per session with the real MiniLM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import world  # noqa: E402

from characterflywheel.reward.settings import RewardConfig  # noqa: E402

PROMPTS = 48


def small_settings(**overrides) -> RewardConfig:
    """Tiny but learnable: short inputs, top two blocks trained, 30 % of prompts held out."""
    values = {"max_length": 48, "history_messages": 1, "system_chars": 0, "trainable_layers": 2, "epochs": 3,
              "lr": 4e-4, "batch_size": 16, "heldout_share": 0.3, "device": "cpu", "seed": 0}
    return RewardConfig(**(values | overrides))


@pytest.fixture(scope="session")
def world_prompts() -> list[dict]:
    return world.chitchat_prompts(PROMPTS)


@pytest.fixture(scope="session")
def annotations_file(tmp_path_factory, world_prompts, embedder) -> Path:
    path = tmp_path_factory.mktemp("reward-data") / "annotations.jsonl"
    world.write_annotations(path, world_prompts, embedder, annotators=3, per_task=1)
    return path


@pytest.fixture(scope="session")
def traffic_file(tmp_path_factory, world_prompts, embedder) -> Path:
    path = tmp_path_factory.mktemp("reward-traffic") / "prompts.jsonl"
    world.write_traffic_prompts(path, world_prompts, embedder)
    return path
