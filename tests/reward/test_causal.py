"""The causal-LM backbone option: TRL's RewardTrainer on SmolLM2 for a few CPU steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import small_settings

from characterflywheel.models import EMBEDDED_POLICY
from characterflywheel.reward import load_pointwise, train_pointwise


@pytest.mark.slow
def test_causal_backbone_trains_with_reward_trainer_and_scores(annotations_file, tmp_path):
    subset = tmp_path / "annotations.jsonl"
    subset.write_text("".join(annotations_file.read_text().splitlines(keepends=True)[:12]))
    settings = small_settings(backbone=EMBEDDED_POLICY, causal_max_steps=2, batch_size=4, max_length=128,
                              trainable_layers=1, lr=1e-4)
    report = train_pointwise(subset, tmp_path / "pointwise", settings, work_dir=tmp_path / "work")
    assert report["trainer"] == "trl.RewardTrainer" and report["pairs"] > 0
    assert np.isfinite(report["train_loss"])
    saved = json.loads((tmp_path / "pointwise" / "reward_config.json").read_text())
    assert saved["style"] == "chat" and saved["normalisation"]["std"] > 0
    assert report["heldout"]["pairwise"]["count"] > 0
    scorer = load_pointwise(tmp_path / "pointwise", device="cpu")
    history = [{"role": "user", "content": "I just got a puppy!"}]
    scores = scorer.score([history, history], ["Congrats! What breed?", "ok."])
    assert scores.shape == (2,) and np.isfinite(scores).all()
