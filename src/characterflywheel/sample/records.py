"""Reading and writing the JSONL artifacts of the sampling stages (contract prompt records in,
SFT / preference / candidate records out).

Assumption: prompt records follow the artifact contract; only the fields sampling needs
(``prompt_id`` and ``prompt``: chat messages ending with a user turn) are checked, the rest is
carried through unchanged. A bad record raises one ``ValueError`` line naming the source,
the record and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from characterflywheel.data._atomic import write_text_atomically

CHAT_ROLES = ("system", "user", "assistant")


def validate_prompt_record(record: Any, source: str, index: int) -> dict[str, Any]:
    """The record itself when it holds a usable ``prompt_id`` and ``prompt``; ValueError otherwise."""
    where = f"{source}: record {index}"
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    prompt_id = record.get("prompt_id")
    if not isinstance(prompt_id, str) or not prompt_id:
        raise ValueError(f"{where}: field 'prompt_id' must be a non-empty string, got {prompt_id!r}")
    where = f"{source}: record {index} (prompt_id={prompt_id})"
    messages = record.get("prompt")
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: field 'prompt' must be a non-empty list of messages")
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in CHAT_ROLES:
            raise ValueError(f"{where}: field 'prompt[{position}].role' must be one of {list(CHAT_ROLES)}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"{where}: field 'prompt[{position}].content' must be a string")
    if messages[-1]["role"] != "user":
        raise ValueError(f"{where}: field 'prompt' must end with a user turn, ends with {messages[-1]['role']!r}")
    return dict(record)


def validate_prompt_records(records: Sequence[Any], source: str = "prompts") -> list[dict[str, Any]]:
    checked = [validate_prompt_record(record, source, index) for index, record in enumerate(records)]
    seen: set[str] = set()
    for index, record in enumerate(checked):
        if record["prompt_id"] in seen:
            raise ValueError(f"{source}: record {index}: field 'prompt_id' repeats {record['prompt_id']!r}")
        seen.add(record["prompt_id"])
    return checked


def read_prompt_records(path: Path | str) -> list[dict[str, Any]]:
    """Contract prompt records from a JSONL file, validated."""
    path = Path(path)
    records: list[Any] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {line_number}: not valid JSON ({error.msg})") from None
    return validate_prompt_records(records, str(path))


def plain_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Only role and content: what chat templates and TRL expect."""
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Write records atomically, one JSON object per line; returns how many."""
    lines = [json.dumps(record, ensure_ascii=False, sort_keys=True) for record in records]
    write_text_atomically(path, "".join(line + "\n" for line in lines))
    return len(lines)


def write_json(path: Path, data: Any) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")
