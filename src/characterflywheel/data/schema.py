"""Traffic schema: one chat conversation per record, as served in production.

This module is the public contract between traffic producers (the serving stack,
the seed converters) and every later stage of the flywheel (curation, reward
models, training). A record looks like::

    {"conversation_id": "c-17", "user_id": "u-3", "character_id": "pirate-ann",
     "model_version": "gen-0", "arm": "control", "started_at": "2026-11-24T10:00:00Z",
     "messages": [{"role": "system", "content": "You are Ann, a pirate..."},
                  {"role": "user", "content": "hey, how was your day?"},
                  {"role": "assistant", "content": "Arr, stormy! Yours?",
                   "signals": {"continued": true, "thumbs": "up"}}]}

Rules (each violation has a stable reason code, see ``REASONS``):

* Types are strict: no coercion of ``1`` to ``"1"`` or ``"yes"`` to ``True``.
  Unknown keys are rejected everywhere except inside ``metadata`` (a free JSON
  object for producers) -- a misspelt ``"thumb"`` must not pass silently.
* ``conversation_id``, ``user_id``, ``character_id``, ``model_version`` are
  required, non-blank strings (at most ``max_id_chars``); ``arm`` is optional.
* ``started_at`` is an ISO 8601 string *with* a timezone (``Z`` or an offset);
  it is normalised to UTC, so ``to_record()`` always renders it with ``Z``.
* ``messages``: 1..``max_messages`` turns; roles are system/user/assistant; at
  most one system turn and only as the first; at least one user turn; content
  is a non-blank string of at most ``max_content_bytes`` UTF-8 bytes without NUL
  characters or lone surrogates (those would crash Parquet/tokenizers later).
* ``signals`` (``continued``: bool|null, ``thumbs``: "up"|"down"|null) may only
  sit on assistant turns; ``response_id`` (optional) likewise identifies a
  generated response, so it is only allowed on assistant turns.
* Role alternation is *not* required: real traffic has double texts.

Limits are configurable per validation call through ``SchemaLimits`` passed in
the pydantic validation context (``validate_conversation(obj, limits)``); the
module constants are the defaults.

Pydantic is used for the structure and types; the cross-field rules are written
here because they are domain rules. Custom errors carry a ``loc_suffix`` in
their context so that a rule checked at the conversation level can still point
at the precise field (``messages[1].role``), which pydantic's model validators
cannot do on their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Mapping, Sequence

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_CONTENT_BYTES = 32 * 1024
"""Default limit on one message's content, in UTF-8 bytes."""
MAX_MESSAGES = 1024
"""Default limit on turns per conversation (the chitchat seed peaks at 564)."""
MAX_ID_CHARS = 256
"""Default limit on identifier-like strings (ids, versions, arm)."""
MAX_METADATA_BYTES = 64 * 1024
"""Default limit on the serialised ``metadata`` object."""

Role = Literal["system", "user", "assistant"]
Thumbs = Literal["up", "down"]


@dataclass(frozen=True)
class SchemaLimits:
    """Size limits applied during validation (override per call)."""

    max_content_bytes: int = MAX_CONTENT_BYTES
    max_messages: int = MAX_MESSAGES
    max_id_chars: int = MAX_ID_CHARS
    max_metadata_bytes: int = MAX_METADATA_BYTES


DEFAULT_LIMITS = SchemaLimits()

# Stable reason codes (used in quarantine records and IngestReport.by_reason).
REASONS: dict[str, str] = {
    "invalid_json": "the line is not valid JSON",
    "not_utf8": "the line is not valid UTF-8",
    "line_too_long": "the line exceeds the ingest line-size limit",
    "duplicate_key": "a JSON object repeats a key",
    "non_finite_number": "NaN or Infinity (not JSON)",
    "not_an_object": "the record is not a JSON object",
    "missing_field": "a required field is absent",
    "unknown_field": "a field not in the schema",
    "wrong_type": "a field has the wrong JSON type",
    "empty_value": "a required string is empty or whitespace",
    "value_too_long": "an identifier exceeds max_id_chars",
    "invalid_text": "a string holds NUL or a lone surrogate",
    "unknown_role": "role is not system/user/assistant",
    "invalid_thumbs": 'thumbs is not "up", "down" or null',
    "empty_content": "message content is empty or whitespace",
    "content_too_large": "message content exceeds max_content_bytes",
    "too_many_messages": "more turns than max_messages",
    "no_messages": "messages is an empty list",
    "signals_not_allowed": "signals on a non-assistant turn",
    "response_id_not_allowed": "response_id on a non-assistant turn",
    "system_not_first": "a system turn that is not the first turn",
    "no_user_message": "no user turn at all",
    "bad_timestamp": "not an ISO 8601 timestamp with timezone",
    "metadata_too_large": "metadata exceeds max_metadata_bytes",
    "invalid_value": "any other invalid value",
    "duplicate_conversation_id": "conversation_id already seen (first wins)",
}


def _limits(info: ValidationInfo | None) -> SchemaLimits:
    context = info.context if info is not None else None
    if isinstance(context, dict):
        limits = context.get("limits")
        if isinstance(limits, SchemaLimits):
            return limits
    return DEFAULT_LIMITS


def _rule_error(code: str, message: str, loc_suffix: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A custom validation error; ``loc_suffix`` extends pydantic's location of the error."""
    return PydanticCustomError(code, message, {"loc_suffix": loc_suffix} if loc_suffix else None)


def _check_clean_text(value: str) -> None:
    if "\x00" in value:
        raise _rule_error("invalid_text", "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _rule_error("invalid_text", "contains a lone surrogate (not encodable as UTF-8)") from None


def _check_identifier(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise _rule_error("empty_value", "must be a non-empty string")
    max_chars = _limits(info).max_id_chars
    if len(value) > max_chars:
        raise _rule_error("value_too_long", f"is {len(value)} characters, limit {max_chars}")
    _check_clean_text(value)
    return value


def parse_timestamp(value: object) -> datetime:
    """ISO 8601 string (or aware datetime, e.g. from Parquet) -> aware UTC datetime."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _rule_error("bad_timestamp", f"not an ISO 8601 timestamp: {value[:64]!r}") from None
    else:
        raise _rule_error("wrong_type", f"must be an ISO 8601 string, got {json_type_name(value)}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _rule_error("bad_timestamp", "timestamp has no timezone (add Z or an offset)")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise _rule_error("bad_timestamp", "timestamp is out of range in UTC") from None


UtcTimestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]


class _StrictModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Signals(_StrictModel):
    """Engagement signals observed after an assistant turn."""

    continued: bool | None = None
    """Whether the user sent another message after this turn."""
    thumbs: Thumbs | None = None
    """Explicit feedback: "up", "down" or null (none given)."""


class Message(_StrictModel):
    """One turn of a conversation."""

    role: Role
    content: str
    signals: Signals | None = None
    response_id: str | None = None

    @field_validator("content")
    @classmethod
    def _content_is_sensible(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise _rule_error("empty_content", "content is empty or whitespace")
        _check_clean_text(value)
        size = len(value.encode("utf-8"))
        limit = _limits(info).max_content_bytes
        if size > limit:
            raise _rule_error("content_too_large", f"content is {size} bytes, limit {limit}")
        return value

    @field_validator("signals")
    @classmethod
    def _signals_only_on_assistant(cls, value: Signals | None, info: ValidationInfo) -> Signals | None:
        role = info.data.get("role")
        if value is not None and role is not None and role != "assistant":
            raise _rule_error("signals_not_allowed", f"signals are only allowed on assistant turns, not {role}")
        return value

    @field_validator("response_id")
    @classmethod
    def _response_id_only_on_assistant(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        role = info.data.get("role")
        if role is not None and role != "assistant":
            raise _rule_error("response_id_not_allowed", f"response_id is only allowed on assistant turns, not {role}")
        return _check_identifier(value, info)


class Conversation(_StrictModel):
    """One conversation between a user and a character."""

    conversation_id: str
    user_id: str
    character_id: str
    model_version: str
    arm: str | None = None
    started_at: UtcTimestamp
    messages: list[Message]
    metadata: dict[str, Any] | None = None

    @field_validator("conversation_id", "user_id", "character_id", "model_version", "arm")
    @classmethod
    def _identifiers(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_identifier(value, info)

    @field_validator("messages")
    @classmethod
    def _message_count(cls, value: list[Message], info: ValidationInfo) -> list[Message]:
        if not value:
            raise _rule_error("no_messages", "messages is empty")
        limit = _limits(info).max_messages
        if len(value) > limit:
            raise _rule_error("too_many_messages", f"{len(value)} messages, limit {limit}")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_is_json(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            encoded = json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise _rule_error("invalid_value", f"metadata is not JSON-safe: {exc}") from None
        limit = _limits(info).max_metadata_bytes
        if len(encoded) > limit:
            raise _rule_error("metadata_too_large", f"metadata is {len(encoded)} bytes, limit {limit}")
        return value

    @model_validator(mode="after")
    def _turn_structure(self) -> Conversation:
        for index, message in enumerate(self.messages):
            if message.role == "system" and index != 0:
                raise _rule_error(
                    "system_not_first",
                    f"system message at position {index}; only the first turn may be a system turn",
                    ("messages", index, "role"),
                )
        if not any(message.role == "user" for message in self.messages):
            raise _rule_error("no_user_message", "conversation has no user message", ("messages",))
        return self

    def to_record(self) -> dict[str, Any]:
        """JSON-safe dict in the wire format (``started_at`` as ISO 8601 with ``Z``)."""
        return self.model_dump(mode="json")

    def to_json_line(self) -> str:
        """The record as one compact JSON line (no trailing newline)."""
        return json.dumps(self.to_record(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def validate_conversation(obj: object, limits: SchemaLimits = DEFAULT_LIMITS) -> Conversation:
    """Validate a decoded JSON value (or Parquet row) as a Conversation.

    Raises ``pydantic.ValidationError``; use ``describe_validation_error`` to map it
    to (field, reason code, message).
    """
    return Conversation.model_validate(obj, context={"limits": limits})


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """Why a record is invalid: the field path, a stable reason code, a human message."""

    field: str
    code: str
    message: str


def format_loc(loc: Sequence[str | int]) -> str:
    """('messages', 2, 'signals') -> 'messages[2].signals'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def json_type_name(value: object) -> str:
    """The JSON name of a decoded value's type (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_TYPE_ERROR_SUFFIX = "_type"
_LITERAL_CODES_BY_FIELD = {"role": "unknown_role", "thumbs": "invalid_thumbs"}


def _code_for(error_type: str, loc: tuple[str | int, ...]) -> str:
    if error_type in REASONS:
        return error_type
    if error_type == "missing":
        return "missing_field"
    if error_type == "extra_forbidden":
        return "unknown_field"
    if error_type.endswith(_TYPE_ERROR_SUFFIX) or error_type in {"model_attributes_type", "is_instance_of"}:
        return "wrong_type"
    if error_type == "literal_error":
        last = loc[-1] if loc else ""
        return _LITERAL_CODES_BY_FIELD.get(str(last), "invalid_value")
    return "invalid_value"


def _message_for(code: str, error: Mapping[str, Any]) -> str:
    if error["type"] == code:  # one of our own errors: its message is already complete
        return str(error["msg"])
    if code == "missing_field":
        return "required field is missing"
    if code == "unknown_field":
        return "field is not part of the schema"
    if code == "wrong_type":
        return f"{error['msg']}, got {json_type_name(error.get('input'))}"
    if code in {"unknown_role", "invalid_thumbs"}:
        return f"{error['msg']}, got {json.dumps(error.get('input'), default=str)[:64]}"
    return str(error["msg"])


def describe_validation_error(error: ValidationError) -> list[Problem]:
    """Map a pydantic ValidationError to Problems, in pydantic's order."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"]) + tuple((item.get("ctx") or {}).get("loc_suffix", ()))
        code = _code_for(item["type"], loc)
        problems.append(Problem(field=format_loc(loc), code=code, message=_message_for(code, item)))
    return problems
