"""Shared helpers and paths for the traffic-data tests (a uniquely named module, so that importing
it can never pick up another directory's conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent
GOOD_FILE = DATA_DIR / "good.jsonl"
MALFORMED_DIR = DATA_DIR / "malformed"
TOLERATED_DIR = DATA_DIR / "tolerated"


def example_record(conversation_id: str = "c-17", **overrides: Any) -> dict[str, Any]:
    """The record from the schema documentation, with optional overrides."""
    record: dict[str, Any] = {
        "conversation_id": conversation_id,
        "user_id": "u-3",
        "character_id": "pirate-ann",
        "model_version": "gen-0",
        "arm": "control",
        "started_at": "2026-11-24T10:00:00Z",
        "messages": [
            {"role": "system", "content": "You are Ann, a pirate..."},
            {"role": "user", "content": "hey, how was your day?"},
            {"role": "assistant", "content": "Arr, stormy! Yours?", "signals": {"continued": True, "thumbs": "up"}},
        ],
    }
    record.update(overrides)
    return record


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def without_nulls(value: Any) -> Any:
    """Drop null-valued keys recursively (absent and null optional fields mean the same)."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value
