"""ingest(): inputs (JSONL, gzip, Parquet), failures as one-line IngestErrors, atomic outputs,
duplicates across files, what the quarantine keeps, progress, and reading the dataset back."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from characterflywheel.data import (
    IngestError,
    Rejection,
    SchemaLimits,
    ingest,
    iter_quarantine_messages,
    read_conversations,
)
from characterflywheel.data.ingest import RAW_EXCERPT_CHARS, iter_raw_lines
from characterflywheel.data.parquet import CONVERSATIONS_SCHEMA
from traffic_test_helpers import GOOD_FILE, MALFORMED_DIR, example_record, write_jsonl


def output_names(out_dir: Path) -> set[str]:
    return {path.name for path in out_dir.iterdir()} if out_dir.exists() else set()


def test_outputs_are_written_and_report_is_json(out_dir: Path) -> None:
    report = ingest([GOOD_FILE], out_dir, progress=False)
    assert output_names(out_dir) == {"conversations.parquet", "quarantine.jsonl", "ingest_report.json"}
    payload = report.to_json()
    assert list(payload)[:3] == ["read", "accepted", "quarantined"]
    assert json.loads((out_dir / "ingest_report.json").read_text()) == payload
    assert (report.read, report.accepted, report.quarantined) == (8, 8, 0)
    assert (out_dir / "quarantine.jsonl").read_text() == ""


def test_accepted_records_keep_input_order(out_dir: Path) -> None:
    ingest([GOOD_FILE], out_dir, progress=False)
    expected = [json.loads(line)["conversation_id"] for line in GOOD_FILE.read_text().splitlines()]
    assert [c.conversation_id for c in read_conversations(out_dir / "conversations.parquet")] == expected


def test_missing_file_raises_one_line_error_naming_it(tmp_path: Path, out_dir: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(IngestError) as caught:
        ingest([GOOD_FILE, missing], out_dir, progress=False)
    assert str(caught.value) == f"{missing}: no such file"
    assert output_names(out_dir) == set()


def test_a_folder_without_data_files_and_an_empty_input_list_are_errors(tmp_path: Path, out_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(IngestError, match="a folder with no data files"):
        ingest([tmp_path / "empty"], out_dir, progress=False)
    with pytest.raises(IngestError, match="no input files"):
        ingest([], out_dir, progress=False)


def test_a_folder_of_parquet_parts_is_read_part_by_part(tmp_path: Path, out_dir: Path) -> None:
    ingest([GOOD_FILE], tmp_path / "first", progress=False)
    export = tmp_path / "export"
    export.mkdir()
    table = pq.read_table(tmp_path / "first" / "conversations.parquet")
    pq.write_table(table.slice(0, 5), export / "part-00000.parquet")
    pq.write_table(table.slice(5), export / "part-00001.parquet")
    (export / "_SUCCESS").write_text("")
    report = ingest([export], out_dir, progress=False)
    assert (report.accepted, report.quarantined) == (8, 0)
    assert report.files == [str(export / "part-00000.parquet"), str(export / "part-00001.parquet")]
    assert list(read_conversations(out_dir)) == list(read_conversations(tmp_path / "first"))


def test_a_parquet_name_on_a_file_that_is_not_parquet_is_named_as_such(tmp_path: Path, out_dir: Path) -> None:
    misnamed = tmp_path / "traffic.parquet"
    misnamed.write_bytes(GOOD_FILE.read_bytes())
    with pytest.raises(IngestError) as caught:
        ingest([GOOD_FILE, misnamed], out_dir, progress=False)
    assert str(caught.value) == f"{misnamed}: not a Parquet file (it does not start with the PAR1 magic bytes)"
    assert output_names(out_dir) == set()


def test_zero_accepted_raises_naming_file_line_and_field_and_keeps_every_rejection(
    tmp_path: Path, out_dir: Path
) -> None:
    ingest([GOOD_FILE], out_dir, progress=False)
    bad = MALFORMED_DIR / "signals_on_user.jsonl"
    with pytest.raises(IngestError) as caught:
        ingest([bad], out_dir, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}: no valid conversations")
    assert f"{bad}:1: messages[1].signals: signals are only allowed on assistant turns" in message
    assert caught.value.report is not None and caught.value.report.quarantined == 1
    quarantined = [json.loads(line) for line in (out_dir / "quarantine.jsonl").read_text().splitlines()]
    assert [(row["line"], row["field"]) for row in quarantined] == [(1, "messages[1].signals")]
    report = json.loads((out_dir / "ingest_report.json").read_text())
    assert (report["read"], report["accepted"], report["quarantined"], report["output"]) == (1, 0, 1, None)
    assert not (out_dir / "conversations.parquet").exists()  # the earlier run's dataset is not this run's


def test_only_blank_lines_is_an_error(tmp_path: Path, out_dir: Path) -> None:
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n")
    with pytest.raises(IngestError, match="no records found"):
        ingest([blank], out_dir, progress=False)


def test_gzip_input(tmp_path: Path, out_dir: Path) -> None:
    compressed = tmp_path / "traffic.jsonl.gz"
    compressed.write_bytes(gzip.compress(GOOD_FILE.read_bytes()))
    report = ingest([compressed], out_dir, progress=False)
    assert report.accepted == 8


def test_truncated_gzip_raises_one_line_error(tmp_path: Path, out_dir: Path) -> None:
    records = [example_record(f"c-{index}") for index in range(2000)]
    data = gzip.compress("".join(json.dumps(record) + "\n" for record in records).encode())
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError) as caught:
        ingest([broken], out_dir, progress=False)
    assert str(caught.value).startswith(f"{broken}:")
    assert "\n" not in str(caught.value)
    assert output_names(out_dir) == set()


def test_parquet_input_round_trips_an_ingested_dataset(tmp_path: Path, out_dir: Path) -> None:
    ingest([GOOD_FILE], tmp_path / "first", progress=False)
    report = ingest([tmp_path / "first" / "conversations.parquet"], out_dir, progress=False)
    assert (report.accepted, report.quarantined) == (8, 0)
    assert list(read_conversations(out_dir)) == list(read_conversations(tmp_path / "first"))


def test_parquet_input_with_bad_rows_is_quarantined_by_row(tmp_path: Path, out_dir: Path) -> None:
    good = json.loads(GOOD_FILE.read_text().splitlines()[0])
    row = dict(good, started_at=None, metadata=None)
    row["started_at"] = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()
    bad_row = json.loads(json.dumps(row, default=str))
    bad_row["conversation_id"] = "c-bad"
    bad_row["messages"][2]["signals"]["thumbs"] = "meh"
    bad_row["started_at"] = row["started_at"]
    table = pa.Table.from_pylist([row, bad_row], schema=CONVERSATIONS_SCHEMA)
    source = tmp_path / "rows.parquet"
    pq.write_table(table, source)
    report = ingest([source], out_dir, progress=False)
    assert (report.accepted, report.quarantined) == (1, 1)
    [rejection] = report.rejections
    assert (rejection.line, rejection.field, rejection.reason) == (2, "messages[2].signals.thumbs", "invalid_thumbs")
    assert json.loads(rejection.raw)["conversation_id"] == "c-bad"


def test_corrupt_parquet_raises_one_line_error(tmp_path: Path, out_dir: Path) -> None:
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1" + b"\x00" * 100)
    with pytest.raises(IngestError) as caught:
        ingest([corrupt], out_dir, progress=False)
    assert str(caught.value).startswith(f"{corrupt}")
    assert "\n" not in str(caught.value)


def test_duplicates_across_files_first_wins(tmp_path: Path, out_dir: Path) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", [example_record("c-1", user_id="first")])
    second = write_jsonl(tmp_path / "b.jsonl", [example_record("c-2"), example_record("c-1", user_id="second")])
    report = ingest([first, second], out_dir, progress=False)
    assert report.by_reason == {"duplicate_conversation_id": 1}
    [rejection] = report.rejections
    assert (rejection.file, rejection.line) == (str(second), 2)
    assert f"first seen at {first}:1" in rejection.detail
    assert {c.conversation_id: c.user_id for c in read_conversations(out_dir)} == {"c-1": "first", "c-2": "u-3"}


def test_non_utf8_line_is_kept_byte_exact(out_dir: Path) -> None:
    fixture = MALFORMED_DIR / "not_utf8.jsonl"
    ingest([GOOD_FILE, fixture], out_dir, progress=False)
    [entry] = [json.loads(line) for line in (out_dir / "quarantine.jsonl").read_text("utf-8").splitlines()]
    original = fixture.read_bytes().rstrip(b"\n")
    assert base64.b64decode(entry["raw_base64"]) == original
    assert entry["raw"] == original.decode("utf-8", errors="replace")


def test_oversized_line_is_streamed_truncated_and_hashed(tmp_path: Path, out_dir: Path) -> None:
    huge = json.dumps(example_record("c-huge", metadata={"blob": "x" * 300_000}))
    source = tmp_path / "huge.jsonl"
    source.write_text(json.dumps(example_record("c-ok")) + "\n" + huge + "\r\n")
    report = ingest([source], out_dir, progress=False, max_line_bytes=100_000)
    [rejection] = report.rejections
    assert (rejection.reason, rejection.line, rejection.raw_truncated) == ("line_too_long", 2, True)
    assert rejection.raw_bytes == len(huge)
    assert rejection.raw_sha256 == hashlib.sha256(huge.encode()).hexdigest()
    assert len(rejection.raw) == RAW_EXCERPT_CHARS and huge.startswith(rejection.raw)


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
@pytest.mark.parametrize("length", [5, 6, 7, 8, 9, 10, 31])
def test_raw_lines_sizes_and_hashes_exclude_terminators(terminator: bytes, length: int) -> None:
    body = bytes(range(97, 97 + length))
    stream = io.BytesIO(body + terminator + b"next" + terminator)
    first, second = iter_raw_lines(stream, max_line_bytes=6)
    assert first.size == length and second.data == b"next"
    assert second.byte_offset == length + len(terminator)
    if first.oversized:
        assert first.sha256 == hashlib.sha256(body).hexdigest()
    else:
        assert first.data == body


def test_content_limit_can_be_changed_for_a_run(tmp_path: Path, out_dir: Path) -> None:
    report = ingest([GOOD_FILE], out_dir, progress=False, limits=SchemaLimits(max_content_bytes=1024))
    assert report.by_reason == {"content_too_large": 1}  # c-7 has a 32 KiB answer


def test_rejection_callback_and_messages(tmp_path: Path, out_dir: Path) -> None:
    seen: list[Rejection] = []
    bad = MALFORMED_DIR / "unknown_role.jsonl"
    report = ingest([GOOD_FILE, bad], out_dir, progress=False, on_rejection=seen.append)
    assert seen == report.rejections
    expected = f"{bad}:1: messages[1].role: Input should be 'system', 'user' or 'assistant', got \"bot\""
    assert list(report.rejection_messages()) == [expected]
    assert list(iter_quarantine_messages(out_dir / "quarantine.jsonl")) == [expected]


def test_progress_bar_runs(out_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = ingest([GOOD_FILE], out_dir, progress=True)
    assert report.accepted == 8
    assert "good.jsonl" in capsys.readouterr().err


def test_no_temporary_files_remain(tmp_path: Path, out_dir: Path) -> None:
    ingest([GOOD_FILE], out_dir, progress=False)
    with pytest.raises(IngestError):
        ingest([MALFORMED_DIR / "nan.jsonl"], out_dir, progress=False)
    assert not [name for name in output_names(out_dir) if name.startswith(".")]


def test_many_records_span_several_row_groups(tmp_path: Path, out_dir: Path) -> None:
    records = [example_record(f"c-{index}") for index in range(5000)]
    report = ingest([write_jsonl(tmp_path / "many.jsonl", records)], out_dir, progress=False)
    assert report.accepted == 5000
    assert pq.ParquetFile(out_dir / "conversations.parquet").num_row_groups > 1
    assert sum(1 for _ in read_conversations(out_dir)) == 5000


def test_output_loads_with_hugging_face_datasets(tmp_path: Path, out_dir: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ingest([GOOD_FILE], out_dir, progress=False)
    loaded = datasets.load_dataset(
        "parquet",
        data_files=str(out_dir / "conversations.parquet"),
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert loaded.num_rows == 8
    first = json.loads(GOOD_FILE.read_text().splitlines()[0])
    assert [message["content"] for message in loaded[0]["messages"]] == [m["content"] for m in first["messages"]]
    assert loaded[0]["messages"][2]["signals"] == {"continued": True, "thumbs": "up"}
    assert json.loads(loaded[2]["metadata"])["client"] == {"app": "ios", "build": 412}
