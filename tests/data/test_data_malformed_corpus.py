"""The malformed-input corpus (tests/data/malformed/*.jsonl): every file holds one kind of bad
record, which must be quarantined with the right reason code and field, without stopping the run.
tests/data/tolerated/*.jsonl are quirks that are deliberately accepted (see ingest's module doc).
The end-to-end test mixes everything into one file and checks the counts reconcile exactly and
the good records round-trip through Parquet unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from characterflywheel.data import REASONS, ingest, iter_quarantine_messages, read_conversations, validate_conversation
from traffic_test_helpers import GOOD_FILE, MALFORMED_DIR, TOLERATED_DIR, without_nulls

# fixture name -> (reason code, field, line of the bad record)
MALFORMED: dict[str, tuple[str, str, int]] = {
    "invalid_json": ("invalid_json", "", 1),
    "truncated_line": ("invalid_json", "", 1),
    "two_records_one_line": ("invalid_json", "", 1),
    "python_repr": ("invalid_json", "", 1),
    "raw_control_character": ("invalid_json", "", 1),
    "deep_nesting": ("invalid_json", "", 1),
    "not_utf8": ("not_utf8", "", 1),
    "latin1_encoded": ("not_utf8", "", 1),
    "line_too_long": ("line_too_long", "", 1),
    "nan": ("non_finite_number", "", 1),
    "infinity": ("non_finite_number", "", 1),
    "duplicate_key": ("duplicate_key", "messages[1].role", 1),
    "top_level_array": ("not_an_object", "", 1),
    "top_level_string": ("not_an_object", "", 1),
    "top_level_null": ("not_an_object", "", 1),
    "top_level_number": ("not_an_object", "", 1),
    "missing_conversation_id": ("missing_field", "conversation_id", 1),
    "missing_started_at": ("missing_field", "started_at", 1),
    "missing_role": ("missing_field", "messages[1].role", 1),
    "unknown_field": ("unknown_field", "convo_id", 1),
    "misspelt_signal_key": ("unknown_field", "messages[2].signals.thumb", 1),
    "wrong_type_conversation_id": ("wrong_type", "conversation_id", 1),
    "null_conversation_id": ("wrong_type", "conversation_id", 1),
    "boolean_as_string_user_id": ("wrong_type", "user_id", 1),
    "wrong_type_continued": ("wrong_type", "messages[2].signals.continued", 1),
    "messages_object": ("wrong_type", "messages", 1),
    "messages_string": ("wrong_type", "messages", 1),
    "extra_nesting_messages": ("wrong_type", "messages[0]", 1),
    "content_object": ("wrong_type", "messages[1].content", 1),
    "content_list": ("wrong_type", "messages[1].content", 1),
    "metadata_array": ("wrong_type", "metadata", 1),
    "timestamp_number": ("wrong_type", "started_at", 1),
    "blank_conversation_id": ("empty_value", "conversation_id", 1),
    "overlong_conversation_id": ("value_too_long", "conversation_id", 1),
    "nul_character": ("invalid_text", "messages[1].content", 1),
    "lone_surrogate": ("invalid_text", "messages[1].content", 1),
    "unknown_role": ("unknown_role", "messages[1].role", 1),
    "thumbs_sideways": ("invalid_thumbs", "messages[2].signals.thumbs", 1),
    "thumbs_boolean": ("invalid_thumbs", "messages[2].signals.thumbs", 1),
    "empty_content": ("empty_content", "messages[1].content", 1),
    "whitespace_content": ("empty_content", "messages[2].content", 1),
    "content_too_large": ("content_too_large", "messages[1].content", 1),
    "too_many_messages": ("too_many_messages", "messages", 1),
    "empty_messages": ("no_messages", "messages", 1),
    "signals_on_user": ("signals_not_allowed", "messages[1].signals", 1),
    "signals_on_system": ("signals_not_allowed", "messages[0].signals", 1),
    "response_id_on_user": ("response_id_not_allowed", "messages[1].response_id", 1),
    "system_not_first": ("system_not_first", "messages[1].role", 1),
    "second_system": ("system_not_first", "messages[3].role", 1),
    "no_user_turn": ("no_user_message", "messages", 1),
    "bad_timestamp": ("bad_timestamp", "started_at", 1),
    "naive_timestamp": ("bad_timestamp", "started_at", 1),
    "impossible_date": ("bad_timestamp", "started_at", 1),
    "duplicate_conversation_id": ("duplicate_conversation_id", "conversation_id", 2),
}
# records in a malformed fixture besides the bad one (the first of a duplicated pair)
GOOD_RECORDS_IN_FIXTURE = {"duplicate_conversation_id": 1}
# fixture name -> number of records it holds (all accepted)
TOLERATED: dict[str, int] = {
    "bom_at_file_start": 1,
    "crlf_line_endings": 2,
    "blank_lines": 1,
    "pretty_spacing": 1,
    "timezone_offset": 1,
    "optional_fields_absent": 1,
    "no_trailing_newline": 1,
    "escaped_unicode": 1,
}
# small enough to catch line_too_long.jsonl (50 KB), big enough for every other fixture
CORPUS_MAX_LINE_BYTES = 40_000
ANCHOR = TOLERATED_DIR / "optional_fields_absent.jsonl"  # one valid record, so a run never has zero accepted

EXPECTED_MIXED_BY_REASON = {
    "wrong_type": 11,
    "invalid_json": 6,
    "not_an_object": 4,
    "missing_field": 3,
    "bad_timestamp": 3,
    "not_utf8": 2,
    "non_finite_number": 2,
    "unknown_field": 2,
    "invalid_text": 2,
    "invalid_thumbs": 2,
    "empty_content": 2,
    "signals_not_allowed": 2,
    "system_not_first": 2,
    "line_too_long": 1,
    "duplicate_key": 1,
    "empty_value": 1,
    "value_too_long": 1,
    "unknown_role": 1,
    "content_too_large": 1,
    "too_many_messages": 1,
    "no_messages": 1,
    "response_id_not_allowed": 1,
    "no_user_message": 1,
    "duplicate_conversation_id": 1,
}


def test_corpus_files_and_expectations_match() -> None:
    assert {path.stem for path in MALFORMED_DIR.glob("*.jsonl")} == set(MALFORMED)
    assert {path.stem for path in TOLERATED_DIR.glob("*.jsonl")} == set(TOLERATED)
    assert {reason for reason, _, _ in MALFORMED.values()} <= set(REASONS)
    assert len(MALFORMED) >= 20


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_record_is_quarantined_with_reason_and_field(name: str, out_dir: Path) -> None:
    reason, field, line = MALFORMED[name]
    fixture = MALFORMED_DIR / f"{name}.jsonl"
    report = ingest([ANCHOR, fixture], out_dir, progress=False, max_line_bytes=CORPUS_MAX_LINE_BYTES)

    assert (report.read, report.quarantined) == (2 + GOOD_RECORDS_IN_FIXTURE.get(name, 0), 1)
    assert report.accepted == 1 + GOOD_RECORDS_IN_FIXTURE.get(name, 0)
    assert report.by_reason == {reason: 1}
    [rejection] = report.rejections
    assert (rejection.reason, rejection.field, rejection.line, rejection.file) == (reason, field, line, str(fixture))

    [entry] = [json.loads(text) for text in (out_dir / "quarantine.jsonl").read_text("utf-8").splitlines()]
    assert list(entry)[:6] == ["file", "line", "field", "reason", "detail", "raw"]
    assert (entry["reason"], entry["field"], entry["line"]) == (reason, field, line)
    assert entry["raw"].strip()

    [message] = list(iter_quarantine_messages(out_dir / "quarantine.jsonl"))
    assert message == rejection.message
    assert "\n" not in message
    prefix = f"{fixture}:{line}: {field}: " if field else f"{fixture}:{line}: "
    assert message.startswith(prefix) and len(message) > len(prefix)


@pytest.mark.parametrize("name", sorted(TOLERATED))
def test_tolerated_quirk_is_accepted(name: str, out_dir: Path) -> None:
    report = ingest([TOLERATED_DIR / f"{name}.jsonl"], out_dir, progress=False)
    assert (report.read, report.accepted, report.quarantined) == (TOLERATED[name], TOLERATED[name], 0)


def test_blank_lines_are_skipped_and_counted_apart(out_dir: Path) -> None:
    report = ingest([TOLERATED_DIR / "blank_lines.jsonl"], out_dir, progress=False)
    assert (report.read, report.blank_lines) == (1, 4)


def test_bom_and_escapes_do_not_leak_into_content(out_dir: Path) -> None:
    ingest([TOLERATED_DIR / "bom_at_file_start.jsonl", TOLERATED_DIR / "escaped_unicode.jsonl"], out_dir, progress=False)
    by_id = {conversation.conversation_id: conversation for conversation in read_conversations(out_dir)}
    assert set(by_id) == {"c-bom", "c-esc"}
    assert by_id["c-esc"].messages[1].content == "caf\u00e9 \U0001f600"


def _as_line(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


def build_mixed_file(path: Path) -> tuple[list[bytes], int]:
    """Interleave good records, tolerated quirks, blank lines and every malformed fixture.

    Returns (the good lines, the number of blank lines written).
    """
    good_lines = [line for line in GOOD_FILE.read_bytes().splitlines(keepends=True) if line.strip()]
    bad_chunks = [_as_line((MALFORMED_DIR / f"{name}.jsonl").read_bytes()) for name in sorted(MALFORMED)]
    tolerated_chunks = [_as_line((TOLERATED_DIR / f"{name}.jsonl").read_bytes()) for name in sorted(TOLERATED)]
    chunks: list[bytes] = []
    blank_lines = 0
    for index, bad in enumerate(bad_chunks):
        if index < len(good_lines):
            chunks.append(good_lines[index])
        if index < len(tolerated_chunks):
            chunks.append(tolerated_chunks[index])
        chunks.append(bad)
        if index % 10 == 0:
            chunks.append(b"   \n")
            blank_lines += 1
    path.write_bytes(b"".join(chunks))
    return good_lines, blank_lines


def test_mixed_file_reconciles_exactly_and_good_records_round_trip(tmp_path: Path, out_dir: Path) -> None:
    mixed = tmp_path / "traffic.jsonl"
    good_lines, blank_written = build_mixed_file(mixed)
    tolerated_records = sum(TOLERATED.values())
    tolerated_blanks = 4  # inside blank_lines.jsonl

    report = ingest([mixed], out_dir, progress=False, max_line_bytes=CORPUS_MAX_LINE_BYTES)

    expected_accepted = len(good_lines) + tolerated_records + sum(GOOD_RECORDS_IN_FIXTURE.values())
    assert report.to_json()["read"] == report.read == report.accepted + report.quarantined
    assert (report.read, report.accepted, report.quarantined) == (
        expected_accepted + len(MALFORMED),
        expected_accepted,
        len(MALFORMED),
    )
    assert (report.accepted, report.quarantined) == (18, 54)
    assert report.blank_lines == blank_written + tolerated_blanks
    assert report.by_reason == EXPECTED_MIXED_BY_REASON
    assert Counter(reason for reason, _, _ in MALFORMED.values()) == Counter(EXPECTED_MIXED_BY_REASON)
    assert sum(report.by_reason.values()) == report.quarantined
    quarantined = [json.loads(line) for line in (out_dir / "quarantine.jsonl").read_text("utf-8").splitlines()]
    assert Counter(entry["reason"] for entry in quarantined) == Counter(EXPECTED_MIXED_BY_REASON)
    assert json.loads((out_dir / "ingest_report.json").read_text())["by_reason"] == EXPECTED_MIXED_BY_REASON

    read_back = {conversation.conversation_id: conversation for conversation in read_conversations(out_dir)}
    assert len(read_back) == report.accepted
    for line in good_lines:
        original = json.loads(line)
        conversation = read_back[original["conversation_id"]]
        assert conversation == validate_conversation(original)
        assert without_nulls(conversation.to_record()) == without_nulls(original)


def test_quarantine_lines_point_back_into_the_source(tmp_path: Path, out_dir: Path) -> None:
    mixed = tmp_path / "traffic.jsonl"
    build_mixed_file(mixed)
    ingest([mixed], out_dir, progress=False, max_line_bytes=CORPUS_MAX_LINE_BYTES)
    source = mixed.read_bytes()
    source_lines = source.splitlines()
    for text in (out_dir / "quarantine.jsonl").read_text("utf-8").splitlines():
        entry = json.loads(text)
        original = source[entry["byte_offset"] : entry["byte_offset"] + entry["raw_bytes"]]
        assert original == source_lines[entry["line"] - 1]
        assert hashlib.sha256(original).hexdigest() == entry["raw_sha256"]
        if not entry["raw_truncated"] and "raw_base64" not in entry:
            assert entry["raw"] == original.decode("utf-8")
