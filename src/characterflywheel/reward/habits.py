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

Fitted on a few hundred rows, the coefficients are uncertain, and a child that differs from its parent
in one habit (finishing its sentences) inherits all of that coefficient's error at once. So the model
keeps ``BOOTSTRAP_DRAWS`` refits on resampled conversations (whole conversations: a conversation's
turns share a user), and ``predict_draws`` gives every refit's prediction; the offline report's evidence
adds their spread to its standard error. On the demo's windows (about 200 rows a generation) the held-out
AUC of the habits was 0.41-0.62 and the bootstrap spread of a child-minus-parent mean 2-7 times its
spread over prompts (docs/climb.md, "Thirteenth round").
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
BOOTSTRAP_DRAWS = 200
_WORD = re.compile(r"[\w']+")


def _emoji(text: str) -> int:
    return sum(1 for char in text if ord(char) >= 0x1F300 or 0x2600 <= ord(char) <= 0x27BF)


def habit_features(reply: str) -> list[float]:
    text = reply.strip()
    return [float("?" in text), float(text.endswith("?")), math.log1p(len(_WORD.findall(text))),
            float(min(_emoji(text), 3)), float(min(text.count("!"), 3)), float(bool(text) and not ends_cleanly(text))]


class HabitModel:
    """P(continue) = sigmoid(w . standardized habits + b); ``draw_coefs`` / ``draw_intercepts``: the
    bootstrap refits' w and b (None when fitted without conversations)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float,
                 draw_coefs: np.ndarray | None = None, draw_intercepts: np.ndarray | None = None) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept
        self.draw_coefs, self.draw_intercepts = draw_coefs, draw_intercepts

    @classmethod
    def fit(cls, replies: Sequence[str], continued: np.ndarray, groups: Sequence[str] | None = None,
            regularization: float = 1.0, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> HabitModel | None:
        """None when the rows cannot fit it (one class only). With ``groups`` (a row's conversation),
        also ``draws`` refits on conversations resampled with replacement (a resample of one class is
        skipped)."""
        from sklearn.linear_model import LogisticRegression

        labels = np.asarray(continued, dtype=int)
        if len(set(labels.tolist())) < 2:
            return None
        matrix = cls._matrix(replies)
        mean, scale = matrix.mean(axis=0), matrix.std(axis=0)
        scale[scale == 0] = 1.0
        standardized = (matrix - mean) / scale

        def logistic(rows: np.ndarray) -> tuple[np.ndarray, float] | None:
            if len(set(labels[rows].tolist())) < 2:
                return None
            model = LogisticRegression(C=regularization, max_iter=1000).fit(standardized[rows], labels[rows])
            return model.coef_[0], float(model.intercept_[0])

        full = logistic(np.arange(len(labels)))
        assert full is not None  # both classes are present (checked above)
        coef, intercept = full
        draw_coefs = draw_intercepts = None
        if groups is not None and draws > 0:
            members: dict[str, list[int]] = {}
            for row, group in enumerate(groups):
                members.setdefault(group, []).append(row)
            conversations = list(members.values())
            rng = np.random.default_rng(seed)
            refits = [logistic(np.concatenate([conversations[i] for i in rng.integers(len(conversations),
                                                                                         size=len(conversations))]))
                      for _ in range(draws)]
            kept = [refit for refit in refits if refit is not None]
            if kept:
                draw_coefs = np.stack([c for c, _ in kept])
                draw_intercepts = np.array([b for _, b in kept])
        return cls(mean, scale, coef, intercept, draw_coefs, draw_intercepts)

    @staticmethod
    def _matrix(replies: Sequence[str]) -> np.ndarray:
        return np.array([habit_features(reply) for reply in replies], dtype=float).reshape(len(replies), len(HABITS))

    def predict(self, replies: Sequence[str]) -> np.ndarray:
        matrix = (self._matrix(replies) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(matrix @ self.coef + self.intercept)))

    def predict_draws(self, replies: Sequence[str]) -> np.ndarray | None:
        """(draws, replies): each bootstrap refit's P(continue); None when fitted without draws."""
        if self.draw_coefs is None or self.draw_intercepts is None:
            return None
        matrix = (self._matrix(replies) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(self.draw_coefs @ matrix.T + self.draw_intercepts[:, None])))

    def save(self, folder: Path) -> None:
        names = list(HABITS)
        data: dict[str, Any] = {
            "features": names, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
            "coefficients": dict(zip(names, self.coef.tolist())), "intercept": self.intercept}
        if self.draw_coefs is not None and self.draw_intercepts is not None:
            spread = self.draw_coefs.std(axis=0, ddof=1) if len(self.draw_coefs) > 1 else np.zeros(len(names))
            data["bootstrap"] = {"resampled": "conversations", "coefficient_se": dict(zip(names, spread.tolist())),
                                 "coefficients": self.draw_coefs.tolist(), "intercepts": self.draw_intercepts.tolist()}
        write_json(folder / HABITS_FILE, data)

    @classmethod
    def load(cls, folder: Path) -> HabitModel | None:
        path = folder / HABITS_FILE
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        coef = np.array([data["coefficients"][name] for name in data["features"]])
        boot = data.get("bootstrap")
        return cls(np.array(data["mean"]), np.array(data["scale"]), coef, float(data["intercept"]),
                   None if boot is None else np.array(boot["coefficients"], dtype=float).reshape(-1, len(coef)),
                   None if boot is None else np.array(boot["intercepts"], dtype=float))
