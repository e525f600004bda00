"""The user-signal model (paper 4.1 / 7.4): predicts what a user does after a reply.

Two logits on the (history, reply) pair encoding: [continue, thumbs up], each trained with binary
cross-entropy on traffic prompt records (contract "prompts": ``prompt``, ``reply``, ``continued``,
``thumbs``). A null label is unknown, not negative: it is masked out of its head's loss (a row with
both labels null is skipped when read). ``thumbs = "down"`` is a negative thumbs-up label. Held-out
split by conversation; per head: AUC, ECE, accuracy, Brier and the base rate.

This model may re-rank rejection-sampled candidates only (paper 7.4): it learns thumbs-up, which
flattery and emoji buy, so it is never the RL reward.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json
from characterflywheel.reward import metrics
from characterflywheel.reward.backbones import (
    SequenceModel,
    freeze_lower_layers,
    load_backbone,
    load_folder,
    pick_device,
    save_folder,
)
from characterflywheel.reward.examples import SignalExample, heldout_groups, load_signal_examples, split
from characterflywheel.reward.habits import HABITS_FILE, HabitModel
from characterflywheel.reward.inputs import ChatMessages
from characterflywheel.reward.pointwise import sigmoid, train_plan, training_settings
from characterflywheel.reward.scorer import input_format
from characterflywheel.reward.settings import RewardConfig
from characterflywheel.reward.training import fingerprint, train_loop

KIND = "user_signal"
HEADS = ("continue", "thumbs_up")


class UserSignalModel:
    """``predict`` -> (n, 2): [P(continue), P(thumbs up)] per (history, reply). With ``habits``
    (``reward.habits``), P(continue) is read off the reply's habits, fitted on the same rows.
    ``heldout_continue_auc``: how well P(continue) ranked the held-out conversations' turns (from the
    training metrics; None when unknown), which the offline evidence weighs the model's vote by."""

    def __init__(self, model: SequenceModel, reward_config: dict[str, Any], habits: HabitModel | None = None,
                 heldout_continue_auc: float | None = None) -> None:
        self.model = model
        self.config = reward_config
        self.habits = habits
        self.heldout_continue_auc = heldout_continue_auc

    def head_logits(self, prompts: Sequence[ChatMessages], replies: Sequence[str], progress: bool = False) -> np.ndarray:
        return self.model.logits(prompts, [(r,) for r in replies], progress, "user signals")

    def predict(self, prompts: Sequence[ChatMessages], replies: Sequence[str], progress: bool = False) -> np.ndarray:
        logits = self.head_logits(prompts, replies, progress)
        probabilities = sigmoid(logits)
        if self.habits is not None and len(replies):
            probabilities[:, 0] = self.habits.predict(replies)
        return probabilities

    def continue_draws(self, replies: Sequence[str]) -> np.ndarray | None:
        """(draws, replies): P(continue) under each bootstrap refit of the habits; None without them."""
        return None if self.habits is None else self.habits.predict_draws(replies)


def load_user_signal(path: Path | str, device: str = "auto", batch_size: int = 64) -> UserSignalModel:
    model, config = load_folder(path, KIND, device, batch_size)
    return UserSignalModel(model, config, HabitModel.load(Path(path)), heldout_continue_auc(path))


def heldout_continue_auc(path: Path | str) -> float | None:
    """The continue head's held-out AUC from the model folder's metrics.json (None without one)."""
    metrics_file = Path(path) / artifacts.METRICS
    if not metrics_file.exists():
        return None
    auc = ((json.loads(metrics_file.read_text()).get("heldout") or {}).get("continue") or {}).get("auc")
    return None if auc is None else float(auc)


def label_matrix(examples: Sequence[SignalExample]) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, known) as (n, 2) float tensors; unknown labels are 0 with known = 0."""
    values = [[e.continued, e.thumbs_up] for e in examples]
    labels = torch.tensor([[float(v) if v is not None else 0.0 for v in row] for row in values])
    known = torch.tensor([[float(v is not None) for v in row] for row in values])
    return labels, known


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Per-head mean BCE over the known labels, summed over heads that have any."""
    losses = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none") * known
    counts = known.sum(dim=0)
    per_head = losses.sum(dim=0) / counts.clamp_min(1.0)
    return per_head[counts > 0].sum()


def evaluate_user_signal(model: UserSignalModel, examples: Sequence[SignalExample]) -> dict[str, Any]:
    predictions = model.predict([e.prompt for e in examples], [e.reply for e in examples])
    report: dict[str, Any] = {}
    for head, name in enumerate(HEADS):
        rows = [i for i, e in enumerate(examples) if (e.continued, e.thumbs_up)[head] is not None]
        labels = np.array([float((examples[i].continued, examples[i].thumbs_up)[head]) for i in rows])
        report[name] = metrics.binary_report(predictions[rows, head] if rows else np.zeros(0), labels)
    return report


def fit_habits(train: Sequence[SignalExample]) -> HabitModel | None:
    """The habits layer on the training rows with a continue label, bootstrapped by conversation."""
    rows = [e for e in train if e.continued is not None]
    if not rows:
        return None
    return HabitModel.fit([e.reply for e in rows], np.array([bool(e.continued) for e in rows]),
                          groups=[e.group for e in rows])


def _habits_summary(folder: Path) -> dict[str, Any]:
    """habits.json without the bootstrap's draws (their coefficients' standard errors stay)."""
    data = json.loads((folder / HABITS_FILE).read_text())
    if "bootstrap" in data:
        data["bootstrap"] = {key: value for key, value in data["bootstrap"].items()
                             if key not in ("coefficients", "intercepts")}
    return data


def train_user_signal(prompts_path: Path | str, out_dir: Path | str, settings: RewardConfig,
                      work_dir: Path | str | None = None, progress: bool = False) -> dict[str, Any]:
    """Train on labelled traffic prompts, evaluate on held-out conversations, save folder + metrics.json."""
    began = time.perf_counter()
    out = Path(out_dir)
    examples = load_signal_examples(prompts_path, settings.max_user_signal_rows)
    if not examples:
        raise ValueError(f"{prompts_path}: no prompt record with a continued or thumbs label")
    heldout = heldout_groups([e.group for e in examples], settings.heldout_share, settings.seed)
    train, held = split(examples, heldout)
    backbone = settings.user_signal_backbone or settings.backbone
    device = pick_device(settings.device)
    model, tokenizer = load_backbone(backbone, num_labels=len(HEADS), seed=settings.seed,
                                     style=settings.encoder_input)
    freeze_lower_layers(model, settings.trainable_layers)
    model.to(device)
    fmt = input_format(settings)
    sequence = SequenceModel(model, tokenizer, fmt, settings.encoder_input, device, settings.eval_batch_size)
    labels, known = label_matrix(train)

    def loss_of_batch(indices: Sequence[int]) -> torch.Tensor:
        batch = [train[i] for i in indices]
        logits = sequence.forward([e.prompt for e in batch], [(e.reply,) for e in batch])
        rows = list(indices)
        return masked_bce(logits, labels[rows].to(logits.device), known[rows].to(logits.device))

    stamp = fingerprint(KIND, backbone, training_settings(settings), train)
    losses = train_loop(model, len(train), loss_of_batch, train_plan(settings), stamp,
                        Path(work_dir) / KIND if work_dir is not None else None, progress, "user-signal model")
    config = {"kind": KIND, "style": settings.encoder_input, "input": fmt.to_dict(), "backbone": backbone, "heads": list(HEADS)}
    save_folder(out, model, tokenizer, config)
    predictor = UserSignalModel(sequence, config)
    head_only = evaluate_user_signal(predictor, held)
    predictor.habits = fit_habits(train)
    if predictor.habits is not None:
        predictor.habits.save(out)
    report = {"kind": KIND, "backbone": backbone, "epoch_losses": losses,
              "train": {"rows": len(train), **{h: int(known[:, i].sum()) for i, h in enumerate(HEADS)}},
              "heldout_conversations": len(heldout), "heldout": evaluate_user_signal(predictor, held),
              "heldout_head_only": head_only,
              "habits": None if predictor.habits is None else _habits_summary(out),
              "seconds": time.perf_counter() - began}
    write_json(out / artifacts.METRICS, report)
    return report
