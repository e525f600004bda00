"""The training loop shared by the encoder reward models.

Why a plain torch loop rather than ``transformers.Trainer``: the pointwise model's step mixes two
kinds of examples with two losses (Bradley-Terry on preference pairs, an ordinal likelihood on
ratings, with thresholds that are parameters outside the HF model), the pairwise model's batches
carry both orders of each pair, and the user-signal model masks unknown labels per head. With a few
hundred to a few thousand examples on a CPU a 60-line loop is easier to read and check than three
``compute_loss`` overrides and collators, and its per-epoch checkpoint is one file. (The causal-LM
backbone does use TRL's RewardTrainer, see ``causal.py``.)

Assumptions and guarantees:

* AdamW (freshly initialised heads and thresholds at ``head_lr_multiplier`` x the learning rate,
  since they start from nothing while the backbone only adapts) with a linear warm-up / decay schedule (``transformers.get_linear_schedule_with_warmup``),
  gradient norm clipped at 1.
* Batches: ``epoch_batches`` shuffles examples; ``group_batches`` shuffles whole groups (all the
  examples of one prompt) and packs them up to ``batch_size`` examples, so a step sees every label
  on a prompt's replies and the loss encodes each distinct (history, reply) once: with several
  replies, pairs and annotators per prompt that is several times fewer encoder passes.
* Seeded: the epoch's example order comes from ``numpy.random.default_rng((seed, epoch))`` and
  torch's RNG (dropout) is reseeded with (seed, epoch) at the start of each epoch, so a run resumed
  from a checkpoint follows the same path as one that was never interrupted.
* After each epoch, ``checkpoint.pt`` (module, optimizer and scheduler state, epochs done, a
  fingerprint of data and settings) is written atomically into the work dir; a later call with the
  same fingerprint resumes after the last finished epoch, a different fingerprint starts afresh.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from characterflywheel.models.progress import show_bars

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class TrainPlan:
    epochs: int
    lr: float
    weight_decay: float
    warmup_share: float
    batch_size: int
    seed: int
    head_lr_multiplier: float = 1.0


FRESH_PARTS = {"head", "thresholds", "classifier", "score"}


def _is_fresh(name: str) -> bool:
    """Parameters initialised for this task (heads, ordinal thresholds) rather than pre-trained."""
    return any(part in FRESH_PARTS for part in name.split("."))


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    order = np.random.default_rng((seed, epoch)).permutation(count)
    return [order[start:start + batch_size] for start in range(0, count, batch_size)]


def group_batches(groups: Sequence[str], batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Indices of examples in batches of whole groups (shuffled per epoch), each batch closed once it
    holds ``batch_size`` examples or more (a group larger than that is a batch of its own)."""
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    names = sorted(members)
    order = np.random.default_rng((seed, epoch)).permutation(len(names))
    batches: list[np.ndarray] = []
    current: list[int] = []
    for position in order:
        current += members[names[position]]
        if len(current) >= batch_size:
            batches.append(np.array(current))
            current = []
    if current:
        batches.append(np.array(current))
    return batches


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Written to a sibling and renamed, so a kill leaves the old checkpoint or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state if state.get("fingerprint") == fingerprint else None


def train_loop(module: nn.Module, example_count: int, loss_of_batch: Callable[[Sequence[int]], torch.Tensor],
               plan: TrainPlan, fingerprint: str, checkpoint_dir: Path | None = None,
               progress: bool = False, description: str = "training",
               groups: Sequence[str] | None = None) -> list[float]:
    """Train ``module`` in place; returns the mean loss of every epoch (resumed epochs included).
    With ``groups`` (one per example) batches hold whole groups (``group_batches``)."""
    if example_count == 0:
        raise ValueError(f"{description}: no training examples")
    if groups is not None and len(groups) != example_count:
        raise ValueError(f"{description}: {len(groups)} groups for {example_count} examples")

    def batches_of(epoch: int) -> list[np.ndarray]:
        if groups is None:
            return epoch_batches(example_count, plan.batch_size, plan.seed, epoch)
        return group_batches(groups, plan.batch_size, plan.seed, epoch)

    steps_per_epoch = len(batches_of(0))
    total_steps = steps_per_epoch * plan.epochs
    fast = [p for name, p in module.named_parameters() if p.requires_grad and _is_fresh(name)]
    slow = [p for name, p in module.named_parameters() if p.requires_grad and not _is_fresh(name)]
    optimizer = torch.optim.AdamW([{"params": slow, "lr": plan.lr},
                                   {"params": fast, "lr": plan.lr * plan.head_lr_multiplier}],
                                  lr=plan.lr, weight_decay=plan.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(plan.warmup_share * total_steps), total_steps)
    checkpoint = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir is not None else None
    losses: list[float] = []
    start_epoch = 0
    if checkpoint is not None and (state := load_checkpoint(checkpoint, fingerprint)) is not None:
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epochs_done"])
        losses = list(state["losses"])
    bar = None
    if show_bars(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, desc=description, unit="step")
    module.train()
    for epoch in range(start_epoch, plan.epochs):
        torch.manual_seed(plan.seed * 100_003 + epoch)
        epoch_losses = []
        for batch in batches_of(epoch):
            loss = loss_of_batch([int(i) for i in batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            epoch_losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{epoch_losses[-1]:.3f}")
        losses.append(float(np.mean(epoch_losses)))
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"fingerprint": fingerprint, "epochs_done": epoch + 1, "losses": losses,
                                         "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                                         "scheduler": scheduler.state_dict()})
    if bar is not None:
        bar.close()
    module.eval()
    return losses


def fingerprint(*parts: Any) -> str:
    """A digest of what a checkpoint was trained on (settings, backbone, examples as reprs)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(repr(part).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()
