"""The pointwise reward model as its users see it: ``PointwiseScorer`` (score, standardise, expected
rating), ``load_pointwise``, and the pieces both of its trainers share (input format, score
normalisation, the unique (prompt, reply) pairs a model is normalised on).

Its own module so that the two trainers, the MiniLM encoder's (``pointwise.py``) and TRL's
RewardTrainer on a causal LM (``causal.py``), both build on it without importing each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from characterflywheel.reward.backbones import SequenceModel, load_folder
from characterflywheel.reward.examples import PreferenceExample, RatingExample
from characterflywheel.reward.inputs import ChatMessages, InputFormat
from characterflywheel.reward.settings import RewardConfig

KIND = "pointwise"


def input_format(settings: RewardConfig) -> InputFormat:
    return InputFormat(settings.max_length, settings.history_messages, settings.system_chars, settings.reply_share)


def expected_rating(scores: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    t = np.asarray(thresholds, dtype=float)
    return 1.0 + (1.0 / (1.0 + np.exp(-(np.asarray(scores, dtype=float)[:, None] - t[None, :])))).sum(axis=1)


class PointwiseScorer:
    """Scores (history, reply) pairs; higher is better. ``score`` gives the raw logit-scale score
    (differences are Bradley-Terry log-odds), ``standardise`` maps it with the saved normalisation."""

    def __init__(self, model: SequenceModel, reward_config: dict[str, Any]) -> None:
        self.model = model
        self.config = reward_config
        normalisation = reward_config.get("normalisation") or {"mean": 0.0, "std": 1.0}
        self.mean = float(normalisation["mean"])
        self.std = float(normalisation["std"]) or 1.0
        self.thresholds = reward_config.get("thresholds")

    def score(self, prompts: Sequence[ChatMessages], replies: Sequence[str], progress: bool = False) -> np.ndarray:
        return self.model.logits(prompts, [(r,) for r in replies], progress, "pointwise scores")[:, 0].astype(float)

    def standardise(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores, dtype=float) - self.mean) / self.std

    def expected_rating(self, prompts: Sequence[ChatMessages], replies: Sequence[str]) -> np.ndarray:
        if self.thresholds is None:
            raise ValueError("this pointwise model was not trained with rating thresholds")
        return expected_rating(self.score(prompts, replies), self.thresholds)


def load_pointwise(path: Path | str, device: str = "auto", batch_size: int = 64) -> PointwiseScorer:
    model, config = load_folder(path, KIND, device, batch_size)
    return PointwiseScorer(model, config)


def normalisation(scores: np.ndarray) -> dict[str, float]:
    std = float(np.std(scores)) if len(scores) > 1 else 1.0
    return {"mean": float(np.mean(scores)) if len(scores) else 0.0, "std": std if std > 1e-6 else 1.0}


def unique_replies(ratings: Sequence[RatingExample],
                   preferences: Sequence[PreferenceExample]) -> tuple[list[list[dict[str, str]]], list[str]]:
    seen: dict[str, tuple[list[dict[str, str]], str]] = {}
    for prompt, reply in [(r.prompt, r.reply) for r in ratings] + [(p.prompt, x) for p in preferences
                                                                    for x in (p.first, p.second)]:
        seen.setdefault(json.dumps([prompt, reply]), (prompt, reply))
    pairs = list(seen.values())
    return [p for p, _ in pairs], [r for _, r in pairs]


