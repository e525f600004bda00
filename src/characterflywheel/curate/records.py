"""Prompt records (the ``prompts`` artifact contract) and their JSONL files.

A prompt record is one assistant turn of logged traffic with what came before it::

    {"prompt_id": "c-17:3", "conversation_id": "c-17", "user_id": "u-3", "character_id": "pirate-ann",
     "model_version": "gen-0", "arm": "control", "depth": 2,
     "prompt": [{"role": "system", ...}, ..., {"role": "user", ...}], "reply": "Arr!",
     "continued": true, "thumbs": null, "cluster": 4}

``cluster`` appears from Phase II on; later phases may add more keys (they are kept). Files are
written atomically (a temporary sibling renamed into place); a bad line read back is a one-line
``ValueError`` naming the file, the line and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from characterflywheel.data._atomic import temporary_sibling


class PromptMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class PromptRecord(BaseModel):
    """The validated shape of one prompt record (extra keys are allowed and kept)."""

    model_config = ConfigDict(extra="allow", strict=True)
    prompt_id: StrictStr = Field(min_length=1)
    conversation_id: StrictStr
    user_id: StrictStr
    character_id: StrictStr
    model_version: StrictStr
    arm: StrictStr | None = None
    depth: StrictInt = Field(ge=1)
    prompt: list[PromptMessage] = Field(min_length=1)
    reply: StrictStr
    continued: StrictBool | None = None
    thumbs: Literal["up", "down"] | None = None
    cluster: StrictInt | None = None

    @field_validator("prompt")
    @classmethod
    def _ends_with_user(cls, prompt: list[PromptMessage]) -> list[PromptMessage]:
        if prompt[-1].role != "user":
            raise ValueError(f"must end with a user turn, ends with {prompt[-1].role}")
        return prompt


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "<record>"


def validate_prompt_record(record: object, where: str) -> dict[str, Any]:
    """The record as a dict if it fits the contract, else a one-line ``ValueError`` naming ``where`` and the field."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: <record>: not a JSON object")
    try:
        PromptRecord.model_validate(record)
    except ValidationError as error:
        first = error.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ValueError(" ".join(f"{where}: {_field_name(tuple(first['loc']))}: {message}".split())) from None
    return record


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


def read_prompt_records(path: Path | str) -> Iterator[dict[str, Any]]:
    """Prompt records from a JSONL file, each validated against the contract; ids must not repeat."""
    seen: dict[str, int] = {}
    for number, record in iter_jsonl(path):
        validate_prompt_record(record, f"{path}:{number}")
        prompt_id = record["prompt_id"]
        if prompt_id in seen:
            raise ValueError(f"{path}:{number}: prompt_id: {prompt_id!r} repeats line {seen[prompt_id]}")
        seen[prompt_id] = number
        yield record


def write_jsonl_records(path: Path | str, records: Iterable[Mapping[str, Any]]) -> int:
    """Write dicts one per line, atomically; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    count = 0
    try:
        with temporary.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return count


def write_json(path: Path | str, data: Any) -> None:
    """A JSON report, indented, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
