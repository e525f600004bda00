"""The reward stage: the three reward models trained from one generation's data.

Inputs: the annotations file (``characterflywheel.data.annotation`` format; pointwise and pairwise
models) and the curated traffic prompts (contract "prompts"; user-signal model). Outputs under
``out_dir``: ``pointwise/``, ``pairwise/`` and ``user_signal/`` (HF folders with
``reward_config.json`` and their own ``metrics.json``) and ``metrics.json`` with all three held-out
reports. A model whose folder already holds ``metrics.json`` is not retrained (a stage killed after
the first model resumes with the second); per-epoch checkpoints live under ``work_dir/<model>/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json
from characterflywheel.reward.settings import RewardConfig

MODEL_DIRS = ("pointwise", "pairwise", "user_signal")


def _done_or_train(folder: Path, train: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    finished = folder / artifacts.METRICS
    if finished.is_file() and (folder / artifacts.REWARD_CONFIG).is_file():
        return json.loads(finished.read_text(encoding="utf-8"))
    return train()


def train_reward_models(annotations_path: Path | str, prompts_path: Path | str, out_dir: Path | str,
                        settings: RewardConfig, work_dir: Path | str | None = None,
                        progress: bool = False) -> dict[str, Any]:
    """Train pointwise, pairwise and user-signal models; returns {model: held-out report}."""
    from characterflywheel.reward.pairwise import train_pairwise
    from characterflywheel.reward.pointwise import train_pointwise
    from characterflywheel.reward.user_signal import train_user_signal

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir) if work_dir is not None else None
    trainers: dict[str, Callable[[Path], dict[str, Any]]] = {
        "pointwise": lambda folder: train_pointwise(annotations_path, folder, settings, work, progress),
        "pairwise": lambda folder: train_pairwise(annotations_path, folder, settings, work, progress),
        "user_signal": lambda folder: train_user_signal(prompts_path, folder, settings, work, progress),
    }
    report = {name: _done_or_train(out / name, lambda name=name: trainers[name](out / name)) for name in MODEL_DIRS}
    write_json(out / artifacts.METRICS, report)
    return report
