"""What the sampling stages need from the reward models and the generation backends.

``characterflywheel.reward`` (``RewardJudge``, ``UserSignalModel``) satisfies these protocols, but
this package never imports it at module level: the stages here are written against the artifact
contract only, so they can be tested with small scorers and a reward package can evolve on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from characterflywheel.models import GenerationBackend

ModelSpec = str | Path
ChatMessages = list[dict[str, str]]
BackendFactory = Callable[[ModelSpec], GenerationBackend]
# (prompt record, reply) -> whether the reply keeps its character's rules (True when none apply).
RuleCheck = Callable[[Mapping[str, Any], str], bool]
# Prompt record -> the opening its reply must start with (None: no constraint).
Opening = Callable[[Mapping[str, Any]], str | None]


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


class CachedBackends:
    """One backend per model spec: a pool model asked for twice (probes, then candidates) is
    loaded once. Specs are keyed by their string form, so ``Path("x")`` and ``"x"`` share one."""

    def __init__(self, factory: BackendFactory) -> None:
        self._factory = factory
        self._backends: dict[str, GenerationBackend] = {}

    def __call__(self, spec: ModelSpec) -> GenerationBackend:
        key = str(spec)
        if key not in self._backends:
            self._backends[key] = self._factory(spec)
        return self._backends[key]

    @property
    def loaded(self) -> list[str]:
        return list(self._backends)
