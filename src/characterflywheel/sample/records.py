"""The message shape the sampling stages write into their SFT and preference rows.

Prompt records are read and checked by ``data.records`` (``prompt_id`` and ``prompt``: chat messages
ending with a user turn; the rest is carried through unchanged); files are written by ``data.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def plain_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Only role and content: what chat templates and TRL expect."""
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
