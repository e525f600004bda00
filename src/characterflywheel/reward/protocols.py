"""What the reward models offer the stages that use them: the contract, not the models.

``RewardJudge`` (pointwise + pairwise heads) satisfies ``Judge`` and ``UserSignalModel`` satisfies
``UserSignalPredictor``. Sampling and evaluation are written against these protocols only, so they can
be tested with small scorers and never load the reward package's models at import; defined once here,
beside the models they describe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

ChatMessages = list[dict[str, str]]


@runtime_checkable
class Judge(Protocol):
    """A reward judge: higher scores are better replies (any real scale)."""

    def score_groups(self, prompts: Sequence[ChatMessages], groups: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One score array per prompt, one score per reply of its group."""
        ...

    def win_rate(
        self, prompts: Sequence[ChatMessages], replies_a: Sequence[str], replies_b: Sequence[str]
    ) -> np.ndarray:
        """Per prompt, P(reply a beats reply b) in [0, 1]."""
        ...


@runtime_checkable
class UserSignalPredictor(Protocol):
    """Predicts user behaviour after a reply: columns [P(continue), P(thumbs up)]."""

    def predict(self, prompts: Sequence[ChatMessages], replies: Sequence[str]) -> np.ndarray:
        ...
