"""User-signal model on real MiniLM, trained on simulated traffic prompt records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import small_settings

from characterflywheel.reward import load_user_signal, train_user_signal
from characterflywheel.reward.examples import load_signal_examples
from characterflywheel.reward.user_signal import masked_bce


def test_unknown_labels_do_not_count():
    logits = torch.tensor([[5.0, -5.0], [0.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    only_first_row = masked_bce(logits, labels, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert float(only_first_row) < 0.02
    assert float(masked_bce(logits, labels, torch.ones(2, 2))) > 0.5


def test_rows_without_labels_are_skipped_and_bad_ones_named(tmp_path):
    base = {"prompt_id": "p", "conversation_id": "c", "prompt": [{"role": "user", "content": "hi"}], "reply": "yo"}
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(base | labels) for labels in
                              ({"continued": None, "thumbs": None}, {"continued": True, "thumbs": None})) + "\n")
    assert [(e.continued, e.thumbs_up) for e in load_signal_examples(path)] == [(True, None)]
    path.write_text(json.dumps(base | {"continued": True, "thumbs": "sideways"}) + "\n")
    with pytest.raises(ValueError, match=r"prompts.jsonl:1: thumbs"):
        load_signal_examples(path)


@pytest.mark.slow
def test_user_signal_beats_chance_per_head(traffic_file, tmp_path):
    report = train_user_signal(traffic_file, tmp_path / "user_signal", small_settings(epochs=3), work_dir=tmp_path / "w")
    held = report["heldout"]
    for head in ("continue", "thumbs_up"):
        assert held[head]["count"] >= 15, held
        assert held[head]["auc"] > 0.65, (head, held)
        assert 0 <= held[head]["ece"] <= 1
    model = load_user_signal(tmp_path / "user_signal", device="cpu")
    assert model.heldout_continue_auc == pytest.approx(held["continue"]["auc"])  # what the gate weighs it by
    rows = [json.loads(line) for line in traffic_file.read_text().splitlines()][:6]
    predictions = model.predict([r["prompt"] for r in rows], [r["reply"] for r in rows])
    assert predictions.shape == (6, 2) and ((predictions > 0) & (predictions < 1)).all()
    np.testing.assert_allclose(predictions, load_user_signal(tmp_path / "user_signal").predict(
        [r["prompt"] for r in rows], [r["reply"] for r in rows]), atol=1e-6)
    # the habits' bootstrap refits (by conversation) travel with the model; the metrics keep their errors only
    draws = model.continue_draws([r["reply"] for r in rows])
    assert draws.shape[1] == 6 and len(draws) > 100 and draws.std(axis=0).max() > 0
    assert set(report["habits"]["bootstrap"]) == {"resampled", "coefficient_se"}
