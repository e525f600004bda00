"""The pairwise preference model (paper 4.2): reads the history and two replies together and
predicts P(first reply better).

Input (``encoder_input``): the history's segments and both replies encoded on their own, the head
reading both replies and their similarities to the context (``segments``, the default); or the
joint pair encoding (history, ``reply A [SEP] reply B``) where each reply gets at most
``reply_share / 2`` of ``max_length`` (``pair``; see ``inputs``). A one-logit head. Training: every
preference annotation in both orders (symmetry augmentation), binary cross-entropy on "first is
preferred". Inference: ``prob_first_better`` averages p(a, b) and 1 - p(b, a), so
P(a > b) + P(b > a) = 1 exactly and a position bias left after training cancels. Held-out (by
prompt): accuracy, AUC and ECE of that symmetric probability against the annotators' choices.
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
from characterflywheel.reward.examples import PreferenceExample, heldout_groups, load_annotation_examples, split
from characterflywheel.reward.inputs import ChatMessages
from characterflywheel.reward.pointwise import sigmoid, train_plan, training_settings
from characterflywheel.reward.scorer import input_format
from characterflywheel.reward.settings import RewardConfig
from characterflywheel.reward.training import fingerprint, train_loop

KIND = "pairwise"


class PairwiseScorer:
    """P(reply a better than reply b) for the same history, symmetric in a and b."""

    def __init__(self, model: SequenceModel, reward_config: dict[str, Any]) -> None:
        self.model = model
        self.config = reward_config

    def logits(self, prompts: Sequence[ChatMessages], replies_a: Sequence[str], replies_b: Sequence[str],
               progress: bool = False) -> np.ndarray:
        """The raw one-order logit f(history, a, b)."""
        groups = [(a, b) for a, b in zip(replies_a, replies_b, strict=True)]
        return self.model.logits(prompts, groups, progress, "pairwise")[:, 0].astype(float)

    def prob_first_better(self, prompts: Sequence[ChatMessages], replies_a: Sequence[str],
                          replies_b: Sequence[str], progress: bool = False) -> np.ndarray:
        n = len(prompts)
        if not n == len(replies_a) == len(replies_b):
            raise ValueError(f"prompts, replies_a and replies_b differ in length: {n}, {len(replies_a)}, {len(replies_b)}")
        both = self.logits([*prompts, *prompts], [*replies_a, *replies_b], [*replies_b, *replies_a], progress)
        return (sigmoid(both[:n]) + 1.0 - sigmoid(both[n:])) / 2.0


def load_pairwise(path: Path | str, device: str = "auto", batch_size: int = 64) -> PairwiseScorer:
    model, config = load_folder(path, KIND, device, batch_size)
    return PairwiseScorer(model, config)


def augmented(preferences: Sequence[PreferenceExample]) -> list[PreferenceExample]:
    """Each pair in both orders."""
    swapped = [PreferenceExample(p.group, p.prompt, p.second, p.first, not p.first_better) for p in preferences]
    return [*preferences, *swapped]


def merged_labels(preferences: Sequence[PreferenceExample]) -> tuple[list[PreferenceExample], torch.Tensor, torch.Tensor]:
    """One example per distinct (history, first, second) with the share of its labels saying "first"
    and the label count as its weight: the same loss as one example per annotation, one encoding."""
    labels: dict[str, list[bool]] = {}
    first: dict[str, PreferenceExample] = {}
    for example in preferences:
        key = json.dumps([example.group, example.prompt, example.first, example.second])
        labels.setdefault(key, []).append(example.first_better)
        first.setdefault(key, example)
    keys = list(labels)
    targets = torch.tensor([float(np.mean(labels[k])) for k in keys], dtype=torch.float32)
    weights = torch.tensor([float(len(labels[k])) for k in keys], dtype=torch.float32)
    return [first[k] for k in keys], targets, weights


def evaluate_pairwise(scorer: PairwiseScorer, preferences: Sequence[PreferenceExample]) -> dict[str, Any]:
    probabilities = scorer.prob_first_better([p.prompt for p in preferences], [p.first for p in preferences],
                                             [p.second for p in preferences])
    labels = np.array([p.first_better for p in preferences], dtype=float)
    return metrics.binary_report(probabilities, labels)


def train_pairwise(annotations_path: Path | str, out_dir: Path | str, settings: RewardConfig,
                   work_dir: Path | str | None = None, progress: bool = False) -> dict[str, Any]:
    """Train on preference annotations, evaluate on held-out prompts, save HF folder + metrics.json."""
    began = time.perf_counter()
    out = Path(out_dir)
    examples = load_annotation_examples(annotations_path)
    if not examples.preferences:
        raise ValueError(f"{annotations_path}: no pairwise annotations to train the pairwise reward model on")
    heldout = heldout_groups([e.group for e in [*examples.ratings, *examples.preferences]],
                             settings.heldout_share, settings.seed)
    train, held = split(examples.preferences, heldout)
    backbone = settings.pairwise_backbone or settings.backbone
    device = pick_device(settings.device)
    model, tokenizer = load_backbone(backbone, num_labels=1, seed=settings.seed, replies=2,
                                     style=settings.encoder_input)
    freeze_lower_layers(model, settings.trainable_layers)
    model.to(device)
    fmt = input_format(settings)
    sequence = SequenceModel(model, tokenizer, fmt, settings.encoder_input, device, settings.eval_batch_size)
    both_orders = augmented(train)
    pairs, targets, weights = merged_labels(both_orders)

    def loss_of_batch(indices: Sequence[int]) -> torch.Tensor:
        batch = [pairs[i] for i in indices]
        logits = sequence.forward([p.prompt for p in batch], [(p.first, p.second) for p in batch])[:, 0]
        rows = list(indices)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, targets[rows].to(logits.device), reduction="none")
        return (loss * weights[rows].to(logits.device)).sum() / weights[rows].sum().to(logits.device)

    stamp = fingerprint(KIND, backbone, training_settings(settings), both_orders)
    losses = train_loop(model, len(pairs), loss_of_batch, train_plan(settings), stamp,
                        Path(work_dir) / KIND if work_dir is not None else None, progress, "pairwise RM",
                        groups=[p.group for p in pairs])
    config = {"kind": KIND, "style": settings.encoder_input, "input": fmt.to_dict(), "backbone": backbone}
    save_folder(out, model, tokenizer, config)
    scorer = PairwiseScorer(sequence, config)
    report = {"kind": KIND, "backbone": backbone, "epoch_losses": losses,
              "train": {"preferences": len(train), "augmented": len(both_orders), "distinct": len(pairs)}, "heldout_prompts": len(heldout),
              "heldout": evaluate_pairwise(scorer, held), "seconds": time.perf_counter() - began}
    write_json(out / artifacts.METRICS, report)
    return report
