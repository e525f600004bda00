"""Sentence embeddings of messages, batched and cached on disk by content hash.

Phase I (the safety classifier) and Phase II (diversity) both embed single messages, so one cache
serves both: a message embedded for the safety check is not embedded again for diversity, nor in a
later generation whose traffic repeats it.

Layout: ``<cache_dir>/emb-<model key>-<n>.npz`` shards, each with ``keys`` (the SHA-256 of model
key + text, hex) and ``vectors`` (float32, L2-normalised). A call that embeds new texts appends one
shard, written atomically, so a killed run loses at most that call's work. Loading reads every shard
of the model key into memory (384 floats = 1.5 KB per text: about 1.5 GB per million texts; a
larger deployment would swap this for a key-value store or a vector database).

Texts are cut to ``max_chars`` characters before hashing and embedding (MiniLM reads 256 word
pieces anyway); an empty text is embedded as a single space.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from characterflywheel.data._atomic import temporary_sibling
from characterflywheel.models.progress import show_bars


class SentenceEncoder(Protocol):
    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


def model_key(embedder: Any) -> str:
    """A short stable id of the embedder (its weights' folder name), used to separate caches."""
    name = ""
    try:
        name = str(embedder[0].auto_model.config._name_or_path)
    except (TypeError, AttributeError, IndexError, KeyError):
        name = type(embedder).__name__
    return hashlib.sha256(name.encode()).hexdigest()[:12]


class EmbeddingCache:
    """``embed(texts) -> (n, dim) float32`` unit vectors; repeated texts are embedded once."""

    def __init__(self, embedder: SentenceEncoder, cache_dir: Path | str | None = None, *, batch_size: int = 64,
                 max_chars: int = 600, progress: bool = False, key: str | None = None) -> None:
        self.embedder = embedder
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.progress = progress
        self.key = key or model_key(embedder)
        self._vectors: dict[str, np.ndarray] = {}
        self._loaded = False
        self.hits = 0
        self.computed = 0

    def _text(self, text: str) -> str:
        return text[: self.max_chars] if text.strip() else " "

    def _hash(self, text: str) -> str:
        return hashlib.sha256(f"{self.key}\0{text}".encode("utf-8", errors="surrogatepass")).hexdigest()

    def _load(self) -> None:
        self._loaded = True
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return
        for shard in sorted(self.cache_dir.glob(f"emb-{self.key}-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, vectors = data["keys"], data["vectors"]
            except (OSError, ValueError, KeyError):
                continue  # a corrupt shard costs a re-embedding, not the run
            for key, vector in zip(keys.tolist(), vectors):
                self._vectors[key] = vector

    def _save(self, keys: list[str], vectors: np.ndarray) -> None:
        if self.cache_dir is None or not keys:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"emb-{self.key}-{os.getpid()}-{uuid.uuid4().hex[:12]}.npz"
        temporary = temporary_sibling(path).with_suffix(".npz")
        try:
            np.savez(temporary, keys=np.array(keys), vectors=vectors.astype(np.float32))
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not self._loaded:
            self._load()
        cut = [self._text(text) for text in texts]
        hashes = [self._hash(text) for text in cut]
        missing: dict[str, str] = {}
        for digest, text in zip(hashes, cut):
            if digest not in self._vectors and digest not in missing:
                missing[digest] = text
        self.hits += len(hashes) - len(missing)
        if missing:
            vectors = np.asarray(
                self.embedder.encode(list(missing.values()), batch_size=self.batch_size, normalize_embeddings=True,
                                     show_progress_bar=show_bars(self.progress), convert_to_numpy=True),
                dtype=np.float32,
            )
            for digest, vector in zip(missing, vectors):
                self._vectors[digest] = vector
            self.computed += len(missing)
            self._save(list(missing), vectors)
        if not hashes:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[digest] for digest in hashes])
