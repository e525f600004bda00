"""Progress bars for long generation runs (tqdm, already a dependency of transformers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm


@contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[tqdm]:
    """A tqdm bar over ``total`` replies; a silent no-op bar when ``enabled`` is False."""
    with tqdm(total=total, desc=description, unit="reply", disable=not enabled, leave=False) as bar:
        yield bar
