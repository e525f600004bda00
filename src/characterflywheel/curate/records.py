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

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from characterflywheel.data.jsonl import iter_jsonl, write_json, write_jsonl
from characterflywheel.data.records import Prompt, check_prompt, iter_prompts

__all__ = ["PromptRecord", "iter_jsonl", "read_prompt_records", "validate_prompt_record", "write_json",
           "write_jsonl"]


class PromptRecord(Prompt):
    """The validated shape of one prompt record: a ``Prompt`` with the traffic fields it came from (extra
    keys are allowed and kept)."""

    conversation_id: StrictStr
    user_id: StrictStr
    character_id: StrictStr
    model_version: StrictStr
    arm: StrictStr | None = None
    depth: StrictInt = Field(ge=1)
    reply: StrictStr
    continued: StrictBool | None = None
    thumbs: Literal["up", "down"] | None = None
    cluster: StrictInt | None = None


def validate_prompt_record(record: object, where: str) -> dict[str, Any]:
    """The record as a dict if it fits the contract, else a one-line ``ValueError`` naming ``where`` and the field."""
    return check_prompt(record, where, PromptRecord)


def read_prompt_records(path: Path | str) -> Iterator[dict[str, Any]]:
    """Prompt records from a JSONL file, each validated against the contract; ids must not repeat."""
    return iter_prompts(path, PromptRecord)
