"""The records stages hand each other after curation, each a pydantic model checked in one place.

* :class:`Prompt`: one assistant turn to be written, what came before it (chat messages ending with a
  user turn) under a ``prompt_id``, usually with the ``character_id`` whose card applies. Curation's
  records (``curate.records.PromptRecord``) are prompts with the traffic fields on top; sampling,
  evaluation and online training read any prompt.
* :class:`SFTRow`: a conversation ending with the assistant turn to learn (rejection sampling writes
  them, SFT reads them); ``weight`` repeats a row in the mixture.
* :class:`PreferencePair`: a prompt and one ``chosen`` and one ``rejected`` assistant turn (DPO).

Every model allows extra keys and keeps them (a stage's provenance, such as ``score`` or ``replay``,
travels with the row). A record that does not fit is one ``ValueError`` line naming where it came
from (``file:line`` or ``source: record i``), the record's ``prompt_id`` when it has one, and the
field. Files are read and written by ``data.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from characterflywheel.data.jsonl import iter_jsonl


class PromptMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "user", "assistant"]
    content: StrictStr


def _ends_with(messages: list[PromptMessage], role: str) -> list[PromptMessage]:
    if messages[-1].role != role:
        raise ValueError(f"must end with {'a' if role == 'user' else 'an'} {role} turn, ends with {messages[-1].role}")
    return messages


class Prompt(BaseModel):
    """The validated shape of a prompt (extra keys are allowed and kept)."""

    model_config = ConfigDict(extra="allow", strict=True)
    prompt_id: StrictStr = Field(min_length=1)
    character_id: StrictStr | None = None
    prompt: list[PromptMessage] = Field(min_length=1)

    @field_validator("prompt")
    @classmethod
    def _ends_with_user(cls, prompt: list[PromptMessage]) -> list[PromptMessage]:
        return _ends_with(prompt, "user")


class SFTRow(BaseModel):
    """A conversation whose last (assistant) turn is the target; ``weight`` repeats the row."""

    model_config = ConfigDict(extra="allow", strict=True)
    messages: list[PromptMessage] = Field(min_length=2)
    weight: StrictInt = Field(default=1, ge=1)
    prompt_id: StrictStr | None = None

    @field_validator("messages")
    @classmethod
    def _ends_with_assistant(cls, messages: list[PromptMessage]) -> list[PromptMessage]:
        return _ends_with(messages, "assistant")


def _one_assistant_turn(turns: list[PromptMessage]) -> list[PromptMessage]:
    if [turn.role for turn in turns] != ["assistant"]:
        raise ValueError("must be exactly one assistant message")
    return turns


class PreferencePair(BaseModel):
    """A prompt (ending with a user turn) with a ``chosen`` and a ``rejected`` assistant turn."""

    model_config = ConfigDict(extra="allow", strict=True)
    prompt: list[PromptMessage] = Field(min_length=1)
    chosen: list[PromptMessage]
    rejected: list[PromptMessage]
    prompt_id: StrictStr | None = None

    @field_validator("prompt")
    @classmethod
    def _ends_with_user(cls, prompt: list[PromptMessage]) -> list[PromptMessage]:
        return _ends_with(prompt, "user")

    _chosen = field_validator("chosen")(_one_assistant_turn)
    _rejected = field_validator("rejected")(_one_assistant_turn)


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "<record>"


def check_record(record: object, where: str, shape: type[BaseModel]) -> dict[str, Any]:
    """The record as a dict if it fits ``shape``, else a one-line ``ValueError`` naming ``where``, the
    record's ``prompt_id`` (when it has one) and the field."""
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: <record>: not a JSON object")
    try:
        shape.model_validate(dict(record))
    except ValidationError as error:
        first = error.errors()[0]
        prompt_id = record.get("prompt_id")
        named = f" (prompt_id {prompt_id})" if isinstance(prompt_id, str) and prompt_id else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ValueError(" ".join(f"{where}{named}: {_field_name(tuple(first['loc']))}: {message}".split())) from None
    return dict(record)


def check_prompt(record: object, where: str, shape: type[Prompt] = Prompt) -> dict[str, Any]:
    return check_record(record, where, shape)


def check_prompts(records: Iterable[object], source: str = "prompts", shape: type[Prompt] = Prompt) -> list[dict[str, Any]]:
    """In-memory records, each checked (``source: record i``); ids must not repeat."""
    checked, seen = [], {}
    for index, record in enumerate(records):
        checked.append(check_prompt(record, f"{source}: record {index}", shape))
        _once(checked[-1]["prompt_id"], seen, index, f"{source}: record {index}", "record")
    return checked


def iter_prompts(path: Path | str, shape: type[Prompt] = Prompt) -> Iterator[dict[str, Any]]:
    """Prompt records from a JSONL file (``file:line``), each checked; ids must not repeat."""
    seen: dict[str, int] = {}
    for number, record in iter_jsonl(path):
        check_prompt(record, f"{path}:{number}", shape)
        _once(record["prompt_id"], seen, number, f"{path}:{number}", "line")
        yield record


def read_prompts(path: Path | str, shape: type[Prompt] = Prompt) -> list[dict[str, Any]]:
    return list(iter_prompts(path, shape))


def read_records(path: Path | str, shape: type[BaseModel]) -> list[dict[str, Any]]:
    """Every record of a JSONL file checked against ``shape`` (``file:line`` in errors); an empty file
    is an error too (a stage that wrote no rows should not have its file trained on)."""
    records = [check_record(record, f"{path}:{number}", shape) for number, record in iter_jsonl(path)]
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def _once(prompt_id: str, seen: dict[str, int], position: int, where: str, unit: str) -> None:
    if prompt_id in seen:
        raise ValueError(f"{where}: prompt_id: {prompt_id!r} repeats {unit} {seen[prompt_id]}")
    seen[prompt_id] = position
