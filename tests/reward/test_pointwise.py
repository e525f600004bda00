"""Pointwise reward model on real MiniLM, trained on simulated annotations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import small_settings

from characterflywheel.reward import load_pointwise, train_pointwise
from characterflywheel.reward.examples import heldout_groups, load_annotation_examples, split
from characterflywheel.reward.pointwise import evaluate_pointwise, ordinal_nll
from characterflywheel.reward.scorer import expected_rating


def test_ordinal_likelihood_prefers_the_matching_rating():
    thresholds = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    high, low = torch.tensor([3.0]), torch.tensor([-3.0])
    assert ordinal_nll(high, torch.tensor([5]), thresholds) < ordinal_nll(high, torch.tensor([1]), thresholds)
    assert ordinal_nll(low, torch.tensor([1]), thresholds) < ordinal_nll(low, torch.tensor([5]), thresholds)
    ratings = expected_rating(np.array([-10.0, 0.0, 10.0]), thresholds.tolist())
    assert ratings[0] == pytest.approx(1.0, abs=1e-3) and ratings[1] == pytest.approx(3.0) and ratings[2] == pytest.approx(5.0, abs=1e-3)


def test_a_bad_annotation_line_is_a_one_line_error(tmp_path):
    path = tmp_path / "annotations.jsonl"
    path.write_text(json.dumps({"task_id": "t", "kind": "rating", "messages": [{"role": "user", "content": "hi"}],
                                "responses": ["yo"], "annotator_id": "a", "label": {"rating": 9}}) + "\n")
    with pytest.raises(ValueError, match=r"annotations.jsonl:1: label.rating"):
        train_pointwise(path, tmp_path / "out", small_settings())


@pytest.mark.slow
def test_pointwise_beats_chance_on_heldout_prompts_and_round_trips(annotations_file, tmp_path):
    settings = small_settings()
    report = train_pointwise(annotations_file, tmp_path / "pointwise", settings, work_dir=tmp_path / "work")
    held = report["heldout"]
    assert held["pairwise"]["count"] >= 10 and held["rating"]["count"] >= 20, held
    assert held["pairwise"]["accuracy"] > 0.65, held
    assert held["pairwise"]["auc"] > 0.7, held
    assert held["rating"]["spearman"] > 0.3, held
    assert 0 <= held["pairwise"]["ece"] <= 1 and held["rating"]["mae"] < 1.5
    assert report["epoch_losses"][-1] < report["epoch_losses"][0]
    saved = json.loads((tmp_path / "pointwise" / "reward_config.json").read_text())
    assert saved["kind"] == "pointwise" and saved["normalisation"]["std"] > 0 and len(saved["thresholds"]) == 4
    assert json.loads((tmp_path / "pointwise" / "metrics.json").read_text())["heldout"] == held

    # Round trip: the loaded folder reproduces the held-out figures computed from the trained model.
    scorer = load_pointwise(tmp_path / "pointwise", device="cpu")
    examples = load_annotation_examples(annotations_file)
    heldout = heldout_groups([e.group for e in [*examples.ratings, *examples.preferences]],
                             settings.heldout_share, settings.seed)
    again = evaluate_pointwise(scorer, [], split(examples.preferences, heldout)[1])
    assert again["pairwise"]["accuracy"] == held["pairwise"]["accuracy"]
    assert again["pairwise"]["ece"] == pytest.approx(held["pairwise"]["ece"], abs=1e-6)
    prompts = [p.prompt for p in examples.preferences[:6]]
    replies = [p.first for p in examples.preferences[:6]]
    np.testing.assert_allclose(scorer.score(prompts, replies), load_pointwise(tmp_path / "pointwise").score(prompts, replies),
                               atol=1e-5)
