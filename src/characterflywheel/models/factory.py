"""``make_backend``: a generation backend by kind ("fast", "transformers", "openai").

The factory lives apart from the shared types in ``models/generation.py`` because it imports every
backend and every backend imports those types; together they made import cycles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from characterflywheel.models.generation import BACKEND_KINDS, GenerationBackend

__all__ = ["make_backend"]


def make_backend(kind: str, model: str | Path, **options: Any) -> GenerationBackend:
    """Build a backend; ``options`` go to its constructor (e.g. ``batch_size``, ``base_url``)."""
    if kind == "fast":
        from characterflywheel.models.fast_backend import FastBackend

        return FastBackend.from_spec(model, **options)
    if kind == "transformers":
        from characterflywheel.models.transformers_backend import TransformersBackend

        return TransformersBackend.from_spec(model, **options)
    if kind == "openai":
        from characterflywheel.models.openai_backend import OpenAIBackend

        return OpenAIBackend(model, **options)
    raise ValueError(f"unknown generation backend {kind!r}; choose one of: {', '.join(BACKEND_KINDS)}")
