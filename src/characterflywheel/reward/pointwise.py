"""The pointwise reward model (paper 4.1): one scalar score for one (history, reply).

Training, jointly on one scalar score s = f(history, reply):

* preference annotations: Bradley-Terry, -log sigmoid(s_preferred - s_other);
* rating annotations: an ordinal (cumulative-logit) likelihood, P(rating > k) = sigmoid(s - t_k)
  with four increasing learned thresholds t_1 < ... < t_4. Both losses live on the same logit
  scale, so sigmoid(s_a - s_b) reads as P(a preferred) and 1 + sum_k sigmoid(s - t_k) is the
  expected rating. ``rating_weight`` scales the rating term.

Held-out (by prompt, see ``examples``): pairwise accuracy, AUC and ECE of sigmoid(s_a - s_b) on
preference annotations; Spearman of s with the rating and MAE of the expected rating on rating
annotations. The saved ``normalisation`` (mean and sd of s over the training replies) lets the
judge standardise scores. An encoder backbone is trained by ``training.train_loop``; a causal-LM
backbone is handed to TRL's RewardTrainer (``causal.py``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json
from characterflywheel.models import resolve_model
from characterflywheel.reward import metrics
from characterflywheel.reward.backbones import (
    SequenceModel,
    freeze_lower_layers,
    is_causal_lm,
    load_backbone,
    pick_device,
    save_folder,
)
from characterflywheel.reward.causal import train_pointwise_causal
from characterflywheel.reward.examples import (
    PreferenceExample,
    RatingExample,
    heldout_groups,
    load_annotation_examples,
    split,
)
from characterflywheel.reward.settings import RewardConfig
from characterflywheel.reward.scorer import (
    KIND,
    PointwiseScorer,
    expected_rating,
    input_format,
    normalisation,
    unique_replies,
)
from characterflywheel.reward.training import TrainPlan, fingerprint, train_loop

RATING_LEVELS = 5


def training_settings(settings: RewardConfig) -> dict[str, Any]:
    """The settings a checkpoint depends on (``epochs`` left out: a longer run may resume a shorter one)."""
    return settings.model_dump(exclude={"epochs", "device", "eval_batch_size", "pairwise_weight"})


def train_plan(settings: RewardConfig) -> TrainPlan:
    return TrainPlan(settings.epochs, settings.lr, settings.weight_decay, settings.warmup_share,
                     settings.batch_size, settings.seed, settings.head_lr_multiplier)


class OrdinalThresholds(nn.Module):
    """Four increasing cut points: t_1 and softplus gaps (so the order can never flip)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Parameter(torch.tensor(-1.5))
        self.gaps = nn.Parameter(torch.full((RATING_LEVELS - 2,), math.log(math.e - 1)))  # softplus^-1(1)

    def forward(self) -> torch.Tensor:
        steps = nn.functional.softplus(self.gaps)
        return self.first + torch.cat([self.first.new_zeros(1), torch.cumsum(steps, 0)])


def ordinal_nll(scores: torch.Tensor, ratings: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of 1-based ratings under the cumulative-logit model."""
    above = torch.sigmoid(scores[:, None] - thresholds[None, :])
    ones, zeros = scores.new_ones(len(scores), 1), scores.new_zeros(len(scores), 1)
    cumulative = torch.cat([ones, above, zeros], dim=1)
    probabilities = cumulative[:, :-1] - cumulative[:, 1:]
    chosen = probabilities.gather(1, (ratings - 1)[:, None]).squeeze(1)
    return -torch.log(chosen.clamp_min(1e-8)).mean()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


class PointwiseModule(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.thresholds = OrdinalThresholds()


def pointwise_loss(sequence: SequenceModel, thresholds: OrdinalThresholds, preferences: Sequence[PreferenceExample],
                   ratings: Sequence[RatingExample], rating_weight: float) -> torch.Tensor:
    """Bradley-Terry on the preferences + rating_weight x ordinal NLL on the ratings, one forward pass
    over the distinct (history, reply) pairs of the batch."""
    prompts = [p.prompt for p in preferences] * 2 + [r.prompt for r in ratings]
    replies = [p.first for p in preferences] + [p.second for p in preferences] + [r.reply for r in ratings]
    slot_of: dict[str, int] = {}
    order: list[int] = []  # the first example of each distinct (history, reply)
    positions: list[int] = []  # each example's row among the distinct ones
    for index, (prompt, reply) in enumerate(zip(prompts, replies, strict=True)):
        key = json.dumps([prompt, reply])
        if key not in slot_of:
            slot_of[key] = len(order)
            order.append(index)
        positions.append(slot_of[key])
    unique_scores = sequence.forward([prompts[i] for i in order], [(replies[i],) for i in order])[:, 0]
    scores = unique_scores[torch.tensor(positions, device=unique_scores.device)]
    loss = scores.new_zeros(())
    count = len(preferences)
    if count:
        sign = torch.tensor([1.0 if p.first_better else -1.0 for p in preferences], device=scores.device)
        loss = loss - nn.functional.logsigmoid(sign * (scores[:count] - scores[count:2 * count])).mean()
    if ratings:
        targets = torch.tensor([r.rating for r in ratings], device=scores.device)
        loss = loss + rating_weight * ordinal_nll(scores[2 * count:], targets, thresholds())
    return loss


def evaluate_pointwise(scorer: PointwiseScorer, ratings: Sequence[RatingExample],
                       preferences: Sequence[PreferenceExample]) -> dict[str, Any]:
    """Held-out metrics: preference accuracy / AUC / ECE of sigmoid(s_a - s_b); rating Spearman, MAE."""
    report: dict[str, Any] = {}
    first = scorer.score([p.prompt for p in preferences], [p.first for p in preferences])
    second = scorer.score([p.prompt for p in preferences], [p.second for p in preferences])
    labels = np.array([p.first_better for p in preferences], dtype=float)
    probabilities = sigmoid(first - second)
    report["pairwise"] = metrics.binary_report(probabilities, labels)
    scores = scorer.score([r.prompt for r in ratings], [r.reply for r in ratings])
    targets = np.array([r.rating for r in ratings], dtype=float)
    report["rating"] = {
        "spearman": metrics.spearman(scores, targets),
        "mae": metrics.mean_absolute_error(expected_rating(scores, scorer.thresholds), targets)
        if scorer.thresholds is not None and len(ratings) else None,
        "count": len(ratings),
    }
    return report


def train_pointwise(annotations_path: Path | str, out_dir: Path | str, settings: RewardConfig,
                    work_dir: Path | str | None = None, progress: bool = False) -> dict[str, Any]:
    """Train, evaluate on held-out prompts, save the HF folder + metrics.json in ``out_dir``."""
    began = time.perf_counter()
    out = Path(out_dir)
    examples = load_annotation_examples(annotations_path)
    if not examples.ratings and not examples.preferences:
        raise ValueError(f"{annotations_path}: no annotations to train the pointwise reward model on")
    heldout = heldout_groups([e.group for e in [*examples.ratings, *examples.preferences]],
                             settings.heldout_share, settings.seed)
    train_ratings, held_ratings = split(examples.ratings, heldout)
    train_prefs, held_prefs = split(examples.preferences, heldout)
    if is_causal_lm(resolve_model(settings.backbone)):
        scorer, extra = train_pointwise_causal(train_ratings, train_prefs, out, settings, work_dir, progress)
    else:
        scorer, extra = _train_pointwise_encoder(train_ratings, train_prefs, out, settings, work_dir, progress)
    report = {"kind": KIND, "backbone": settings.backbone, **extra,
              "train": {"ratings": len(train_ratings), "preferences": len(train_prefs)},
              "heldout_prompts": len(heldout), "heldout": evaluate_pointwise(scorer, held_ratings, held_prefs),
              "normalisation": scorer.config.get("normalisation"), "seconds": time.perf_counter() - began}
    write_json(out / artifacts.METRICS, report)
    return report


def _train_pointwise_encoder(ratings: list[RatingExample], preferences: list[PreferenceExample], out: Path,
                             settings: RewardConfig, work_dir: Path | str | None,
                             progress: bool) -> tuple[PointwiseScorer, dict[str, Any]]:
    device = pick_device(settings.device)
    model, tokenizer = load_backbone(settings.backbone, num_labels=1, seed=settings.seed,
                                     style=settings.encoder_input)
    freeze_lower_layers(model, settings.trainable_layers)
    module = PointwiseModule(model).to(device)
    fmt = input_format(settings)
    sequence = SequenceModel(module.model, tokenizer, fmt, settings.encoder_input, device, settings.eval_batch_size)
    mixed: list[RatingExample | PreferenceExample] = [*preferences, *ratings]

    def loss_of_batch(indices: Sequence[int]) -> torch.Tensor:
        batch = [mixed[i] for i in indices]
        return pointwise_loss(sequence, module.thresholds, [e for e in batch if isinstance(e, PreferenceExample)],
                              [e for e in batch if isinstance(e, RatingExample)], settings.rating_weight)

    stamp = fingerprint(KIND, training_settings(settings), mixed)
    losses = train_loop(module, len(mixed), loss_of_batch, train_plan(settings), stamp,
                        Path(work_dir) / KIND if work_dir is not None else None, progress, "pointwise RM",
                        groups=[example.group for example in mixed])
    thresholds = [float(t) for t in module.thresholds().detach().cpu()]
    prompts, replies = unique_replies(ratings, preferences)
    train_scores = sequence.logits(prompts, [(r,) for r in replies])[:, 0]
    config = {"kind": KIND, "style": settings.encoder_input, "input": fmt.to_dict(), "backbone": settings.backbone,
              "normalisation": normalisation(train_scores), "thresholds": thresholds}
    save_folder(out, module.model, tokenizer, config)
    return PointwiseScorer(sequence, config), {"epoch_losses": losses, "thresholds": thresholds}
