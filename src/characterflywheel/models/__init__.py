"""Models: embedded offline defaults, model resolution/loading, and generation backends.

Public API (used by the CLI and the flywheel stages)::

    resolve_model(spec) -> Path             # "embedded:..." or a local HF folder
    load_policy(spec, dtype) -> (model, tokenizer)
    load_embedder(spec) -> SentenceTransformer
    make_backend(kind, model, **options) -> GenerationBackend   # "fast" | "transformers" | "openai"
    backend.chat(conversations, SamplingParams(...), progress=False) -> list[list[str]]

transformers, sentence-transformers and openai are imported when used, not here.
"""

from characterflywheel.models.generation import (
    BACKEND_KINDS,
    Conversation,
    GenerationBackend,
    Message,
    SamplingParams,
)
from characterflywheel.models.factory import make_backend
from characterflywheel.models.loading import (
    EMBEDDED_EMBEDDER,
    EMBEDDED_POLICY,
    ModelNotFoundError,
    is_adapter_folder,
    load_causal_lm,
    load_embedder,
    load_policy,
    resolve_model,
)

__all__ = [
    "BACKEND_KINDS",
    "EMBEDDED_EMBEDDER",
    "EMBEDDED_POLICY",
    "Conversation",
    "GenerationBackend",
    "Message",
    "ModelNotFoundError",
    "SamplingParams",
    "is_adapter_folder",
    "load_causal_lm",
    "load_embedder",
    "load_policy",
    "make_backend",
    "resolve_model",
]
