"""Pairwise preference model on real MiniLM, trained on simulated pairwise annotations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import small_settings

from characterflywheel.reward import load_pairwise, train_pairwise
from characterflywheel.reward.examples import PreferenceExample
from characterflywheel.reward.pairwise import augmented


def test_augmentation_adds_the_swapped_order():
    example = PreferenceExample("g", [{"role": "user", "content": "hi"}], "a", "b", True)
    both = augmented([example])
    assert [(e.first, e.second, e.first_better) for e in both] == [("a", "b", True), ("b", "a", False)]


@pytest.mark.slow
def test_pairwise_beats_chance_and_is_symmetric(annotations_file, tmp_path):
    report = train_pairwise(annotations_file, tmp_path / "pairwise", small_settings(epochs=3), work_dir=tmp_path / "w")
    held = report["heldout"]
    assert held["count"] >= 10
    assert held["accuracy"] > 0.6, held
    assert held["auc"] > 0.65, held
    assert held["ece"] is not None and 0 <= held["ece"] <= 1
    assert json.loads((tmp_path / "pairwise" / "reward_config.json").read_text())["kind"] == "pairwise"

    scorer = load_pairwise(tmp_path / "pairwise", device="cpu")
    rows = [json.loads(line) for line in annotations_file.read_text().splitlines()][:8]
    prompts = [r["messages"] for r in rows]
    a, b = [r["responses"][0] for r in rows], [r["responses"][-1] + " really" for r in rows]
    forward, backward = scorer.prob_first_better(prompts, a, b), scorer.prob_first_better(prompts, b, a)
    np.testing.assert_allclose(forward + backward, 1.0, atol=1e-6)
    assert ((forward >= 0) & (forward <= 1)).all()
    np.testing.assert_allclose(forward, load_pairwise(tmp_path / "pairwise").prob_first_better(prompts, a, b), atol=1e-6)
