"""Reply habits: the few surface features of a reply that users react to, for the user-signal model.

A traffic window gives a hundred or a few hundred (history, reply, continued) rows. The user-signal
model's neural head reads MiniLM embeddings (hundreds of dimensions), which so few rows cannot pin
down: on a demo window's 118 rows it ranked one prompt's replies by the hidden truth at a Spearman
rho of 0.08. Whether a reply asks the user something back, how long it is, whether it stopped
mid-sentence, its emoji and exclamation marks are a handful of numbers those rows can pin down. So
the model's P(continue) is a logistic regression (scikit-learn, L2) on these habits, fitted on the
training rows; the neural head keeps the thumbs-up column (and P(continue) when every row has one
label). The head's own logit is not an input: fitted on the rows it was trained on, it is
overconfident there and took all the weight (a standardized coefficient of 3.0 against <= 0.4).
Engagement modelling as a team does it with little data, every coefficient readable in
``habits.json``; generic chat-style features (the style monitor's kind) learned from what users did,
never from an annotation guideline.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from characterflywheel.data.jsonl import write_json
from characterflywheel.models.generation import ends_cleanly

HABITS = ("asks_back", "ends_with_question", "log_words", "emoji", "exclamations", "unfinished")
HABITS_FILE = "habits.json"
_WORD = re.compile(r"[\w']+")


def _emoji(text: str) -> int:
    return sum(1 for char in text if ord(char) >= 0x1F300 or 0x2600 <= ord(char) <= 0x27BF)


def habit_features(reply: str) -> list[float]:
    text = reply.strip()
    return [float("?" in text), float(text.endswith("?")), math.log1p(len(_WORD.findall(text))),
            float(min(_emoji(text), 3)), float(min(text.count("!"), 3)), float(bool(text) and not ends_cleanly(text))]


class HabitModel:
    """P(continue) = sigmoid(w . standardized habits + b)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept

    @classmethod
    def fit(cls, replies: Sequence[str], continued: np.ndarray, regularization: float = 1.0) -> HabitModel | None:
        """None when the rows cannot fit it (one class only)."""
        from sklearn.linear_model import LogisticRegression

        labels = np.asarray(continued, dtype=int)
        if len(set(labels.tolist())) < 2:
            return None
        matrix = cls._matrix(replies)
        mean, scale = matrix.mean(axis=0), matrix.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(C=regularization, max_iter=1000).fit((matrix - mean) / scale, labels)
        return cls(mean, scale, model.coef_[0], float(model.intercept_[0]))

    @staticmethod
    def _matrix(replies: Sequence[str]) -> np.ndarray:
        return np.array([habit_features(reply) for reply in replies], dtype=float).reshape(len(replies), len(HABITS))

    def predict(self, replies: Sequence[str]) -> np.ndarray:
        matrix = (self._matrix(replies) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(matrix @ self.coef + self.intercept)))

    def save(self, folder: Path) -> None:
        names = list(HABITS)
        write_json(folder / HABITS_FILE, {
            "features": names, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
            "coefficients": dict(zip(names, self.coef.tolist())), "intercept": self.intercept})

    @classmethod
    def load(cls, folder: Path) -> HabitModel | None:
        path = folder / HABITS_FILE
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        coef = np.array([data["coefficients"][name] for name in data["features"]])
        return cls(np.array(data["mean"]), np.array(data["scale"]), coef, float(data["intercept"]))
