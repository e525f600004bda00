"""The herding chain on the real embedded SmolLM2: a step with no rows passes its parent on, and only
the final child keeps its weights (intermediate children are full model copies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from characterflywheel.models import EMBEDDED_POLICY
from characterflywheel.train import run_herding
from characterflywheel.train.settings import TrainConfig

pytestmark = pytest.mark.slow


def test_a_step_without_rows_is_skipped_and_intermediate_weights_are_dropped(sft_path: Path, tmp_path: Path):
    empty = tmp_path / "prefs.jsonl"
    empty.write_text("")
    settings = TrainConfig(sft_max_steps=1, sft_batch_size=2, sft_max_length=128, save_steps=1)
    out = tmp_path / "herd"
    metrics = run_herding(EMBEDDED_POLICY, ["sft", "dpo"], {"sft": sft_path, "preferences": empty}, out, settings,
                          tmp_path / "work")
    assert metrics["dpo/skipped_no_data"] == 1.0 and metrics["sft/steps_run"] == 1
    assert (out / "model" / "config.json").is_file()
    assert sorted(path.name for path in (out / "sft").iterdir()) == ["metrics.json"]
    # a re-run finds every step done and keeps the final child
    again = run_herding(EMBEDDED_POLICY, ["sft", "dpo"], {"sft": sft_path, "preferences": empty}, out, settings,
                        tmp_path / "work")
    assert again == metrics and (out / "model" / "config.json").is_file()


def test_herding_in_its_own_process_returns_its_metrics_and_raises_its_errors(sft_path: Path, tmp_path: Path):
    from characterflywheel.train import run_herding_in_own_process

    settings = TrainConfig(sft_max_steps=1, sft_batch_size=2, sft_max_length=128, save_steps=1)
    out = tmp_path / "herd"
    metrics = run_herding_in_own_process(EMBEDDED_POLICY, ["sft"], {"sft": sft_path}, out, settings, tmp_path / "work")
    assert metrics["sft/steps_run"] == 1 and (out / "model" / "config.json").is_file()
    with pytest.raises(ValueError, match="needs inputs\\['preferences'\\]"):
        run_herding_in_own_process(EMBEDDED_POLICY, ["dpo"], {"sft": sft_path}, tmp_path / "h2", settings, tmp_path / "w2")
    # a recipe's own error crosses back from the recipe's process, its one line intact
    import json

    bad = tmp_path / "bad.jsonl"
    row = json.loads(sft_path.read_text().splitlines()[0])
    bad.write_text(json.dumps({**row, "weight": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1 \(prompt_id 0\): weight: Input should be a valid integer"):
        run_herding_in_own_process(EMBEDDED_POLICY, ["sft"], {"sft": bad}, tmp_path / "h3", settings, tmp_path / "w3")
