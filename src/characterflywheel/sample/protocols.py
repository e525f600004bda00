"""What the sampling stages need from the reward models and the generation backends.

The reward models' side is their contract, ``reward.protocols`` (``Judge``, ``UserSignalPredictor``,
re-exported here); the stages never load the reward package's models at import, so they can be tested
with small scorers and the reward package can evolve on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from characterflywheel.models import GenerationBackend
from characterflywheel.reward.protocols import ChatMessages, Judge, UserSignalPredictor

__all__ = ["BackendFactory", "CachedBackends", "ChatMessages", "Judge", "ModelSpec", "Opening", "RuleCheck",
           "UserSignalPredictor"]

ModelSpec = str | Path
BackendFactory = Callable[[ModelSpec], GenerationBackend]
# (prompt record, reply) -> how many of its character's applicable rules the reply breaks (0: keeps them all,
# or none apply).
RuleCheck = Callable[[Mapping[str, Any], str], int]
# Prompt record -> the opening its reply must start with (None: no constraint).
Opening = Callable[[Mapping[str, Any]], str | None]


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
