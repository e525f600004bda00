"""Ingest raw traffic files into a validated Parquet dataset plus a quarantine.

``ingest(files, out_dir)`` streams every record of every input file through the
schema (``characterflywheel.data.schema``) and writes

* ``out_dir/conversations.parquet`` -- accepted conversations (see
  ``characterflywheel.data.parquet`` for the layout),
* ``out_dir/quarantine.jsonl`` -- one JSON object per rejected record::

      {"file": "traffic.jsonl", "line": 17, "field": "messages[2].signals",
       "reason": "signals_not_allowed",
       "detail": "signals are only allowed on assistant turns, not user",
       "raw": "<the line as text>", "raw_bytes": 213, "raw_truncated": false,
       "raw_sha256": "...", "byte_offset": 4096}

  ``reason`` is a stable code (the keys of ``schema.REASONS``; the same keys as
  ``IngestReport.by_reason``), ``detail`` the human explanation, ``field`` the
  offending field path ("" when the whole line is at fault, e.g. bad JSON).
  ``raw`` is the line decoded as UTF-8 with ``errors="replace"`` and truncated to
  ``RAW_EXCERPT_CHARS``; so that nothing is lost, ``raw_base64`` holds the exact
  bytes of a short line that was not valid UTF-8, and ``byte_offset`` (in the
  decompressed stream) + ``raw_bytes`` + ``raw_sha256`` locate and verify any line
  in its source file, however long.
* ``out_dir/ingest_report.json`` -- ``IngestReport.to_json()``.

All three are written to temporary files and renamed into place only when the
run succeeds; a failed run (``IngestError``) leaves ``out_dir`` as it was, except
that a run which rejected every record still writes its quarantine and report
(and no Parquet) before it fails, so no rejected record is lost.

Decisions:

* Inputs: JSONL (one conversation per line), gzip-compressed JSONL, or Parquet
  (rows in the output layout, e.g. a previous ingest), or a folder of such parts
  (a warehouse export's ``part-*.parquet``). The format is sniffed from the
  file's magic bytes, not its name; a ``.parquet`` without them is refused. For Parquet, ``line`` is the 1-based row
  number, ``raw`` the row rendered as JSON and ``byte_offset`` null.
* Blank (whitespace-only) lines are skipped and not counted in ``read``;
  ``IngestReport.blank_lines`` counts them. ``read == accepted + quarantined``.
* A UTF-8 byte-order mark at the start of a line (file start, or files joined
  with ``cat``) is an encoding artefact and is stripped; ``\\r\\n`` is accepted.
* JSON is stricter than Python's ``json`` module: NaN/Infinity and repeated keys
  in an object are rejected (``json.loads`` would silently accept both).
* Duplicate ``conversation_id``: the first occurrence wins, across all files,
  later ones are quarantined. The seen ids are held in memory (roughly 150 bytes
  per conversation: about 1.5 GB for 10 million).
* A line longer than ``max_line_bytes`` is quarantined without being held in
  memory (streamed and hashed), so one runaway line cannot exhaust memory.
* A missing/unreadable file, a stream that breaks mid-file (truncated gzip,
  corrupt Parquet), or zero accepted records raise ``IngestError`` (one line).

The standard ``json`` module and pydantic do the parsing/validation; the streaming
line reader is hand-written because neither ``datasets`` nor ``pyarrow.json``
can report per-line errors and keep going: both abort the whole file on the
first malformed line.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from characterflywheel import artifacts
from characterflywheel.data._atomic import temporary_sibling
from characterflywheel.data.jsonl import dumps, write_json
from characterflywheel.data.parquet import (
    ConversationParquetWriter,
    iter_parquet_rows,
    row_to_record,
)
from characterflywheel.data.schema import (
    DEFAULT_LIMITS,
    Conversation,
    Problem,
    SchemaLimits,
    describe_validation_error,
    format_loc,
    json_type_name,
    validate_conversation,
)

REPORT_FILENAME = "ingest_report.json"
MAX_LINE_BYTES = 16 * 1024 * 1024
"""Default longest accepted JSONL line (a conversation), in bytes."""
RAW_EXCERPT_CHARS = 16 * 1024
"""How much of a rejected line's text is kept in ``raw``."""
RAW_BASE64_MAX_BYTES = 16 * 1024
"""Non-UTF-8 lines up to this size are also kept byte-exact in ``raw_base64``."""
MAX_KEPT_REJECTIONS = 1000
"""Rejections kept in ``IngestReport.rejections`` (all of them go to the quarantine file)."""
PROGRESS_EVERY = 256
_HEAD_BYTES = RAW_EXCERPT_CHARS * 4  # enough bytes for RAW_EXCERPT_CHARS characters of UTF-8

_BOM = "\ufeff"
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"


class IngestError(Exception):
    """Ingest cannot produce a dataset. ``str()`` is one line naming the file."""

    def __init__(self, message: str, report: IngestReport | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.report = report


# --------------------------------------------------------------------------- results


def format_rejection_message(file: str, line: int, field: str, detail: str) -> str:
    """One line: ``file:line: field: detail`` (``file:line: detail`` when the whole record is at fault)."""
    return f"{file}:{line}: {field}: {detail}" if field else f"{file}:{line}: {detail}"


@dataclass(frozen=True)
class Rejection:
    """One quarantined record."""

    file: str
    line: int
    field: str
    reason: str
    detail: str
    raw: str
    raw_bytes: int
    raw_truncated: bool
    raw_sha256: str
    byte_offset: int | None = None
    raw_base64: str | None = None

    @property
    def message(self) -> str:
        """``traffic.jsonl:17: messages[2].signals: signals are only allowed on assistant turns``."""
        return format_rejection_message(self.file, self.line, self.field, self.detail)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "detail": self.detail,
            "raw": self.raw,
            "raw_bytes": self.raw_bytes,
            "raw_truncated": self.raw_truncated,
            "raw_sha256": self.raw_sha256,
            "byte_offset": self.byte_offset,
        }
        if self.raw_base64 is not None:
            record["raw_base64"] = self.raw_base64
        return record


@dataclass
class IngestReport:
    """Counts of one ingest run; ``read == accepted + quarantined``."""

    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    blank_lines: int = 0
    files: list[str] = field(default_factory=list)
    output: str | None = None
    quarantine: str | None = None
    rejections: list[Rejection] = field(default_factory=list)
    """The first ``MAX_KEPT_REJECTIONS`` rejections (all are in the quarantine file)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "by_reason": dict(sorted(self.by_reason.items(), key=lambda item: (-item[1], item[0]))),
            "blank_lines": self.blank_lines,
            "files": list(self.files),
            "output": self.output,
            "quarantine": self.quarantine,
        }

    def rejection_messages(self) -> Iterator[str]:
        """One-line messages for the kept rejections (see ``iter_quarantine_messages`` for all)."""
        return (rejection.message for rejection in self.rejections)


def iter_quarantine_messages(quarantine_file: Path) -> Iterator[str]:
    """One-line human messages for every record in a quarantine file."""
    with open(quarantine_file, encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            yield format_rejection_message(entry["file"], entry["line"], entry["field"], entry["detail"])


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _RawLine:
    """A physical line: ``data`` is the whole line without terminator, or only its head if oversized."""

    number: int
    byte_offset: int
    data: bytes
    size: int
    sha256: str | None = None

    @property
    def oversized(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class _Candidate:
    """A record read from a file, decoded to a Python value or already known to be bad."""

    line: int
    raw: bytes
    raw_size: int
    blank: bool = False
    value: object = None
    problem: Problem | None = None
    byte_offset: int | None = None
    raw_sha256: str | None = None


class _RecordProblem(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _strip_terminator(data: bytes) -> bytes:
    if data.endswith(b"\n"):
        data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
    return data


def iter_raw_lines(stream: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[_RawLine]:
    """Physical lines of a binary stream; a line over ``max_line_bytes`` is streamed, not held.

    ``size`` (and, for an oversized line, ``sha256``) cover the line without its terminator.
    """
    offset = 0
    number = 0
    while True:
        chunk = stream.readline(max_line_bytes + 2)  # room for the longest allowed line + "\r\n"
        if not chunk:
            return
        number += 1
        if chunk.endswith(b"\n") or len(chunk) < max_line_bytes + 2:  # the whole line is in hand
            data = _strip_terminator(chunk)
            if len(data) <= max_line_bytes:
                yield _RawLine(number, offset, data, len(data))
            else:
                yield _RawLine(number, offset, data[:_HEAD_BYTES], len(data), hashlib.sha256(data).hexdigest())
            offset += len(chunk)
            continue
        line, consumed = _drain_oversized_line(stream, chunk)
        yield _RawLine(number, offset, *line)
        offset += consumed


def _drain_oversized_line(stream: BinaryIO, first_chunk: bytes) -> tuple[tuple[bytes, int, str], int]:
    """Read the rest of a too-long line, keeping only its head: ((head, size, sha256), bytes consumed)."""
    head = first_chunk[:_HEAD_BYTES]
    digest, size, consumed = hashlib.sha256(), 0, 0
    pending = b""  # a trailing \r is held back: it may be half of a \r\n terminator
    chunk = first_chunk
    while chunk:
        consumed += len(chunk)
        ends_line = chunk.endswith(b"\n")
        body = _strip_terminator(pending + chunk) if ends_line else pending + chunk
        pending = b""
        if not ends_line and body.endswith(b"\r"):
            body, pending = body[:-1], b"\r"
        digest.update(body)
        size += len(body)
        if ends_line:
            break
        chunk = stream.readline(1 << 20)
    digest.update(pending)
    size += len(pending)
    return (head, size, digest.hexdigest()), consumed


class _DuplicateKeyObject(dict):  # type: ignore[type-arg]
    """Marks the JSON object in which a key was repeated (found afterwards by path search)."""

    def __init__(self, pairs: list[tuple[str, Any]], duplicate: str) -> None:
        super().__init__(pairs)
        self.duplicate = duplicate


def _first_repeated_key(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no repeated key")


def _reject_non_finite(constant: str) -> float:
    raise _RecordProblem(Problem("", "non_finite_number", f"{constant} is not valid JSON (numbers must be finite)"))


def _find_duplicate_key(value: object, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    if isinstance(value, _DuplicateKeyObject):
        return path + (value.duplicate,)
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = _find_duplicate_key(child, path + (key,))
        if found is not None:
            return found
    return None


class StrictJsonDecoder:
    """``json.loads`` that also rejects NaN/Infinity and repeated object keys.

    The repeated-key check costs nothing on clean records: the structure is only
    searched (to name the offending field) when the hook has seen a repeat.
    """

    def __init__(self) -> None:
        self._repeat_seen = False
        self._decoder = json.JSONDecoder(object_pairs_hook=self._build_object, parse_constant=_reject_non_finite)

    def _build_object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        self._repeat_seen = True
        return _DuplicateKeyObject(pairs, _first_repeated_key(pairs))

    def decode_record(self, text: str) -> dict[str, Any]:
        """One record (must be a JSON object); raises ``_RecordProblem``."""
        self._repeat_seen = False
        try:
            value = self._decoder.decode(text)
        except json.JSONDecodeError as exc:
            reason = exc.msg.removesuffix(" at")
            raise _RecordProblem(Problem("", "invalid_json", f"invalid JSON: {reason} at column {exc.colno}")) from None
        except RecursionError:
            raise _RecordProblem(Problem("", "invalid_json", "invalid JSON: nested too deeply")) from None
        if self._repeat_seen:
            path = _find_duplicate_key(value) or ("?",)
            raise _RecordProblem(Problem(format_loc(path), "duplicate_key", f"key {path[-1]!r} appears twice in one object"))
        if not isinstance(value, dict):
            raise _RecordProblem(Problem("", "not_an_object", f"a record must be a JSON object, got {json_type_name(value)}"))
        return value


def _decode_line(line: _RawLine, max_line_bytes: int, decoder: StrictJsonDecoder) -> _Candidate:
    """A JSONL line -> candidate record (``blank=True`` for a whitespace-only line)."""
    base = {"line": line.number, "raw": line.data, "raw_size": line.size, "byte_offset": line.byte_offset}
    if line.oversized:
        problem = Problem("", "line_too_long", f"line is {line.size} bytes, limit {max_line_bytes}")
        return _Candidate(**base, problem=problem, raw_sha256=line.sha256)
    try:
        text = line.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem("", "not_utf8", f"invalid UTF-8 byte 0x{line.data[exc.start]:02x} at byte {exc.start + 1}")
        return _Candidate(**base, problem=problem)
    text = text.lstrip(_BOM)
    if not text.strip():
        return _Candidate(**base, blank=True)
    try:
        return _Candidate(**base, value=decoder.decode_record(text))
    except _RecordProblem as exc:
        return _Candidate(**base, problem=exc.problem)


def _sniff_format(path: Path) -> str:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == _PARQUET_MAGIC:
        return "parquet"
    if path.suffix.lower() == ".parquet":
        raise IngestError(f"{path}: not a Parquet file (it does not start with the PAR1 magic bytes)")
    if magic[:2] == _GZIP_MAGIC:
        return "jsonl.gz"
    return "jsonl"


class _ProgressHook:
    """Reports progress of one file to rich (in bytes for JSONL, rows for Parquet)."""

    def __init__(self, progress: Progress, name: str, total: float) -> None:
        self._progress = progress
        self._task = progress.add_task(name, total=total, records=0)

    def update(self, completed: float, records: int) -> None:
        self._progress.update(self._task, completed=completed, records=records)


def _iter_jsonl(path: Path, compressed: bool, max_line_bytes: int, hook: _ProgressHook) -> Iterator[_Candidate]:
    with open(path, "rb") as raw_file:
        stream: BinaryIO = gzip.GzipFile(fileobj=raw_file) if compressed else raw_file  # type: ignore[assignment]
        decoder = StrictJsonDecoder()
        lines_read = 0
        for line in iter_raw_lines(stream, max_line_bytes):
            lines_read = line.number
            if lines_read % PROGRESS_EVERY == 0:
                hook.update(raw_file.tell(), lines_read)
            yield _decode_line(line, max_line_bytes, decoder)
        hook.update(raw_file.tell(), lines_read)


def _parquet_row_candidate(number: int, row: dict[str, Any]) -> _Candidate:
    raw = json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
    try:
        value = row_to_record(row)
    except json.JSONDecodeError as exc:
        problem = Problem("metadata", "invalid_json", f"metadata column is not a JSON object: {exc.msg}")
        return _Candidate(number, raw, len(raw), problem=problem)
    return _Candidate(number, raw, len(raw), value=value)


def _iter_parquet(path: Path, hook: _ProgressHook) -> Iterator[_Candidate]:
    number = 0
    for number, row in enumerate(iter_parquet_rows(path), start=1):
        if number % PROGRESS_EVERY == 0:
            hook.update(number, number)
        yield _parquet_row_candidate(number, row)
    hook.update(number, number)


def _parquet_row_count(path: Path) -> int:
    parquet_file = pq.ParquetFile(path)
    try:
        return parquet_file.metadata.num_rows
    finally:
        parquet_file.close()


def _iter_candidates(path: Path, max_line_bytes: int, progress: Progress) -> Iterator[_Candidate]:
    kind = _sniff_format(path)
    if kind == "parquet":
        yield from _iter_parquet(path, _ProgressHook(progress, path.name, _parquet_row_count(path)))
    else:
        hook = _ProgressHook(progress, path.name, path.stat().st_size)
        yield from _iter_jsonl(path, kind == "jsonl.gz", max_line_bytes, hook)


# --------------------------------------------------------------------------- judging


def _rejection(file: str, candidate: _Candidate, problem: Problem) -> Rejection:
    data = candidate.raw
    text = data.decode("utf-8", errors="replace")
    excerpt = text[:RAW_EXCERPT_CHARS]
    keep_bytes = candidate.raw_size <= RAW_BASE64_MAX_BYTES and not _is_utf8(data)
    return Rejection(
        file=file,
        line=candidate.line,
        field=problem.field,
        reason=problem.code,
        detail=problem.message,
        raw=excerpt,
        raw_bytes=candidate.raw_size,
        raw_truncated=len(excerpt) < len(text) or len(data) < candidate.raw_size,
        raw_sha256=candidate.raw_sha256 or hashlib.sha256(data).hexdigest(),
        byte_offset=candidate.byte_offset,
        raw_base64=base64.b64encode(data).decode("ascii") if keep_bytes else None,
    )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _validate(candidate: _Candidate, limits: SchemaLimits) -> Conversation | Problem:
    if candidate.problem is not None:
        return candidate.problem
    try:
        return validate_conversation(candidate.value, limits)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        first = problems[0]
        if len(problems) > 1:
            first = Problem(first.field, first.code, f"{first.message} (+{len(problems) - 1} more problems)")
        return first


@dataclass
class _Run:
    """Mutable state of one ingest run."""

    report: IngestReport
    writer: ConversationParquetWriter
    quarantine: TextIO  # appended to as records are rejected: a big input's rejections need not fit in memory
    on_rejection: Callable[[Rejection], None] | None
    first_seen: dict[str, int] = field(default_factory=dict)
    """conversation_id -> where it was accepted, packed as file_index * 2**40 + line (compact for big runs)."""
    reasons: Counter[str] = field(default_factory=Counter)

    def accept(self, conversation: Conversation, file_index: int, line: int) -> None:
        self.first_seen[conversation.conversation_id] = (file_index << 40) | line
        self.writer.write(conversation)
        self.report.accepted += 1

    def first_seen_at(self, conversation_id: str) -> str | None:
        packed = self.first_seen.get(conversation_id)
        if packed is None:
            return None
        return f"{self.report.files[packed >> 40]}:{packed & ((1 << 40) - 1)}"

    def reject(self, rejection: Rejection) -> None:
        self.quarantine.write(dumps(rejection.to_json()) + "\n")
        self.reasons[rejection.reason] += 1
        self.report.quarantined += 1
        if len(self.report.rejections) < MAX_KEPT_REJECTIONS:
            self.report.rejections.append(rejection)
        if self.on_rejection is not None:
            self.on_rejection(rejection)


def _guarded(path: Path, open_candidates: Callable[[], Iterator[_Candidate]]) -> Iterator[_Candidate]:
    """Turn a read failure (truncated gzip, corrupt Parquet, I/O error) into a one-line IngestError."""
    line = 0
    try:
        for candidate in open_candidates():
            line = candidate.line
            yield candidate
    except (OSError, EOFError, zlib.error, pa.ArrowException) as exc:
        where = f"{path}:{line + 1}" if line else str(path)
        raise IngestError(f"{where}: cannot read the file from here on: {type(exc).__name__}: {exc}") from exc


def _process_file(
    file_index: int, path: Path, run: _Run, limits: SchemaLimits, max_line_bytes: int, progress: Progress
) -> None:
    name = str(path)
    for candidate in _guarded(path, lambda: _iter_candidates(path, max_line_bytes, progress)):
        if candidate.blank:
            run.report.blank_lines += 1
            continue
        run.report.read += 1
        outcome = _validate(candidate, limits)
        if isinstance(outcome, Conversation):
            first_seen = run.first_seen_at(outcome.conversation_id)
            if first_seen is None:
                run.accept(outcome, file_index, candidate.line)
                continue
            outcome = Problem(
                "conversation_id",
                "duplicate_conversation_id",
                f"duplicate conversation_id {outcome.conversation_id!r} (first seen at {first_seen})",
            )
        run.reject(_rejection(name, candidate, outcome))


def _make_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[records]:,} read"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


DATA_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json")


def _folder_parts(folder: Path) -> list[Path]:
    """A folder's data files in name order: a warehouse export's ``part-*.parquet`` (Spark, BigQuery,
    Snowflake unload) or JSONL parts; markers such as ``_SUCCESS`` and hidden files are skipped."""
    parts = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(("_", "."))
                   and p.name.lower().endswith(DATA_SUFFIXES))
    if not parts:
        raise IngestError(f"{folder}: a folder with no data files ({', '.join(DATA_SUFFIXES)})")
    return parts


def _check_inputs(files: Sequence[Path]) -> list[Path]:
    if not files:
        raise IngestError("no input files given")
    paths: list[Path] = []
    for file in map(Path, files):
        paths += _folder_parts(file) if file.is_dir() else [file]
    for path in paths:
        if not path.exists():
            raise IngestError(f"{path}: no such file")
        if not path.is_file():
            raise IngestError(f"{path}: not a regular file")
        try:
            _sniff_format(path)  # a misnamed file fails here, before anything is written
        except OSError as exc:
            raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return paths


def _no_accepted_error(paths: list[Path], report: IngestReport, quarantine: Path) -> IngestError:
    if report.read == 0:
        return IngestError(f"{paths[0]}: no records found in {len(paths)} input file(s) (only blank lines?)", report)
    first = report.rejections[0]
    return IngestError(
        f"{first.file}: no valid conversations in {len(paths)} input file(s): "
        f"read {report.read}, quarantined {report.quarantined} (in {quarantine}); first rejection: {first.message}",
        report,
    )


def ingest(
    files: Sequence[Path],
    out_dir: Path,
    progress: bool = True,
    *,
    limits: SchemaLimits = DEFAULT_LIMITS,
    max_line_bytes: int = MAX_LINE_BYTES,
    on_rejection: Callable[[Rejection], None] | None = None,
) -> IngestReport:
    """Validate traffic files into ``out_dir`` (Parquet + quarantine + report); see module doc."""
    paths = _check_inputs(files)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IngestError(f"{out_dir}: cannot create output directory: {exc.strerror or exc}") from exc
    parquet_path, quarantine_path = out_dir / artifacts.CONVERSATIONS, out_dir / artifacts.QUARANTINE
    report = IngestReport(files=[str(path) for path in paths], output=str(parquet_path), quarantine=str(quarantine_path))
    quarantine_tmp = temporary_sibling(quarantine_path)
    writer = ConversationParquetWriter(parquet_path)
    try:
        with open(quarantine_tmp, "w", encoding="utf-8") as quarantine, _make_progress(progress) as bar:
            run = _Run(report, writer, quarantine, on_rejection)
            for file_index, path in enumerate(paths):
                _process_file(file_index, path, run, limits, max_line_bytes, bar)
        report.by_reason = dict(sorted(run.reasons.items(), key=lambda item: (-item[1], item[0])))
    except BaseException:
        writer.abort()
        quarantine_tmp.unlink(missing_ok=True)
        raise
    if report.accepted == 0:  # nothing to write, but every rejected record keeps its reason
        writer.abort()
        parquet_path.unlink(missing_ok=True)  # an earlier run's dataset is not this run's
        report.output = None
    else:
        writer.commit()
    os.replace(quarantine_tmp, quarantine_path)
    write_json(out_dir / REPORT_FILENAME, report.to_json())
    if report.accepted == 0:
        raise _no_accepted_error(paths, report, quarantine_path)
    return report
