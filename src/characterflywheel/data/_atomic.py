"""Atomic file replacement: write a hidden sibling temp file, then ``os.replace`` it over the target.

The sibling lives in the same directory, hence on the same filesystem, so the rename is atomic;
readers see either the old file or the complete new one. (``tempfile`` would also work, but its
default directory may be on another filesystem, where a rename is a copy.)
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A unique hidden path next to ``path`` (``.name.<pid>.<random>.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_text_atomically(path: Path, text: str) -> None:
    temporary = temporary_sibling(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
