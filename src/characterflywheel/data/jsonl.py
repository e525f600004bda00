"""The one reader and writer of the JSON and JSONL artifacts every stage hands to the next.

Writes are atomic (a hidden sibling file renamed over the target, see ``_atomic``): a stage killed
mid-write leaves the old file or none, never half a file, which is what lets a re-run trust any file
it finds. Records may be plain mappings or pydantic models (dumped in their JSON mode). Reading yields
``(line number, object)`` so that a caller's error can name the file, the line and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from characterflywheel.data._atomic import temporary_sibling, write_text_atomically


def _plain(value: Any) -> Any:
    """What ``json`` cannot write itself: numpy scalars and arrays, paths, pydantic models."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(record: Mapping[str, Any] | BaseModel) -> str:
    """One record as one JSON line (no newline)."""
    if isinstance(record, BaseModel):
        return record.model_dump_json()
    return json.dumps(record, ensure_ascii=False, default=_plain)


def write_jsonl(path: Path | str, records: Iterable[Mapping[str, Any] | BaseModel]) -> int:
    """Write records one per line, atomically; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    count = 0
    try:
        with temporary.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(dumps(record) + "\n")
                count += 1
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return count


def write_json(path: Path | str, data: Any) -> None:
    """A JSON report, indented, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False, default=_plain) + "\n")


def iter_jsonl(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, decoded object) for every non-blank line; a bad line is a one-line ValueError."""
    path = Path(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise ValueError(f"{path}:{number}: <record>: not UTF-8 text") from None
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: <record>: not valid JSON: {error.msg} (column {error.colno})") from None
            if not isinstance(value, dict):
                raise ValueError(f"{path}:{number}: <record>: not a JSON object")
            yield number, value


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Every record of a JSONL file (see :func:`iter_jsonl`)."""
    return [record for _, record in iter_jsonl(path)]
