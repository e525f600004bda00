"""A reward model killed after an epoch resumes from its checkpoint and ends where an
uninterrupted run ends."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_settings

from characterflywheel.reward import load_pointwise, train_pointwise
from characterflywheel.reward import training


class Killed(Exception):
    pass


@pytest.mark.slow
def test_training_resumes_after_a_kill(annotations_file, tmp_path, monkeypatch):
    subset = tmp_path / "annotations.jsonl"
    subset.write_text("".join(annotations_file.read_text().splitlines(keepends=True)[:24]))
    settings = small_settings(epochs=2, max_length=32, trainable_layers=1)
    straight = train_pointwise(subset, tmp_path / "straight", settings, work_dir=tmp_path / "work-straight")

    original = training.save_checkpoint

    def save_then_die(path, state):
        original(path, state)
        raise Killed

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_pointwise(subset, tmp_path / "resumed", settings, work_dir=tmp_path / "work-resumed")
    monkeypatch.setattr(training, "save_checkpoint", original)
    assert (tmp_path / "work-resumed" / "pointwise" / training.CHECKPOINT_NAME).is_file()
    resumed = train_pointwise(subset, tmp_path / "resumed", settings, work_dir=tmp_path / "work-resumed")

    assert resumed["epoch_losses"] == pytest.approx(straight["epoch_losses"], abs=1e-5)
    rows = [line for line in subset.read_text().splitlines()][:5]
    import json

    tasks = [json.loads(r) for r in rows]
    prompts, replies = [t["messages"] for t in tasks], [t["responses"][0] for t in tasks]
    np.testing.assert_allclose(load_pointwise(tmp_path / "resumed").score(prompts, replies),
                               load_pointwise(tmp_path / "straight").score(prompts, replies), atol=1e-4)
