"""The Conversation schema: valid records, strictness, limits, error locations, Arrow layout."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest
from pydantic import ValidationError

from characterflywheel.data.parquet import CONVERSATIONS_SCHEMA, conversation_to_row, row_to_record
from characterflywheel.data.schema import (
    REASONS,
    Conversation,
    Message,
    SchemaLimits,
    Signals,
    describe_validation_error,
    format_loc,
    validate_conversation,
)
from traffic_test_helpers import example_record


def problems_of(record: dict, limits: SchemaLimits = SchemaLimits()) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        validate_conversation(record, limits)
    return [(problem.field, problem.code) for problem in describe_validation_error(caught.value)]


def test_documented_example_is_valid_and_round_trips() -> None:
    conversation = validate_conversation(example_record())
    assert conversation.messages[2].signals == Signals(continued=True, thumbs="up")
    assert conversation.started_at == datetime(2026, 11, 24, 10, tzinfo=timezone.utc)
    record = conversation.to_record()
    assert record["started_at"] == "2026-11-24T10:00:00Z"
    assert validate_conversation(record) == conversation
    assert validate_conversation(json.loads(conversation.to_json_line())) == conversation


def test_started_at_is_normalised_to_utc() -> None:
    conversation = validate_conversation(example_record(started_at="2026-11-24T12:30:00+02:30"))
    assert conversation.to_record()["started_at"] == "2026-11-24T10:00:00Z"


def test_optional_extras_are_accepted() -> None:
    record = example_record(arm=None, metadata={"client": {"app": "web"}, "tags": ["x"]})
    record["messages"][2]["response_id"] = "r-1"
    conversation = validate_conversation(record)
    assert conversation.metadata == {"client": {"app": "web"}, "tags": ["x"]}
    assert conversation.messages[2].response_id == "r-1"


def test_no_coercion_of_types() -> None:
    record = example_record()
    record["messages"][2]["signals"]["continued"] = 1
    assert problems_of(record) == [("messages[2].signals.continued", "wrong_type")]


def test_every_problem_is_reported_in_order() -> None:
    record = example_record(conversation_id=5, user_id=None)
    del record["model_version"]
    assert problems_of(record) == [
        ("conversation_id", "wrong_type"),
        ("user_id", "wrong_type"),
        ("model_version", "missing_field"),
    ]


def test_limits_are_configurable_per_call() -> None:
    record = example_record()
    assert problems_of(record, SchemaLimits(max_content_bytes=22)) == [("messages[0].content", "content_too_large")]
    assert problems_of(record, SchemaLimits(max_messages=2)) == [("messages", "too_many_messages")]
    assert problems_of(record, SchemaLimits(max_id_chars=3)) == [
        ("conversation_id", "value_too_long"),
        ("character_id", "value_too_long"),
        ("model_version", "value_too_long"),
        ("arm", "value_too_long"),
    ]
    assert problems_of(example_record(metadata={"k": "v" * 50}), SchemaLimits(max_metadata_bytes=20)) == [
        ("metadata", "metadata_too_large")
    ]


def test_content_limit_counts_utf8_bytes_not_characters() -> None:
    record = example_record(messages=[{"role": "user", "content": "é" * 6}])  # 12 bytes
    assert problems_of(record, SchemaLimits(max_content_bytes=11)) == [("messages[0].content", "content_too_large")]
    validate_conversation(record, SchemaLimits(max_content_bytes=12))


def test_models_are_immutable() -> None:
    conversation = validate_conversation(example_record())
    with pytest.raises(ValidationError):
        conversation.user_id = "someone-else"  # type: ignore[misc]


def test_python_construction_is_validated_too() -> None:
    with pytest.raises(ValidationError):
        Message(role="user", content="hi", signals=Signals(continued=True))
    with pytest.raises(ValidationError):
        Conversation(
            conversation_id="c",
            user_id="u",
            character_id="k",
            model_version="m",
            started_at=datetime(2026, 1, 1),  # naive
            messages=[Message(role="user", content="hi")],
        )


def test_metadata_must_be_json_safe() -> None:
    assert problems_of(example_record(metadata={"when": datetime(2026, 1, 1)})) == [("metadata", "invalid_value")]
    assert problems_of(example_record(metadata={"x": float("nan")})) == [("metadata", "invalid_value")]


def test_format_loc() -> None:
    assert format_loc(("messages", 2, "signals")) == "messages[2].signals"
    assert format_loc(()) == ""
    assert format_loc(("metadata", "a", 0)) == "metadata.a[0]"


def test_reason_codes_are_documented() -> None:
    assert all(code.isidentifier() and text for code, text in REASONS.items())


def test_arrow_row_matches_schema_and_back() -> None:
    conversation = validate_conversation(example_record(metadata={"a": [1, 2.5, None, True]}))
    table = pa.Table.from_pylist([conversation_to_row(conversation)], schema=CONVERSATIONS_SCHEMA)
    assert table.schema.field("messages").type.value_type.field("signals").type.field("thumbs").type == pa.string()
    [row] = table.to_pylist()
    assert isinstance(row["metadata"], str)
    assert validate_conversation(row_to_record(row)) == conversation
