"""Parquet storage of validated conversations.

Layout (``CONVERSATIONS_SCHEMA``), one row per conversation:

==================  ==========================================================
conversation_id     string, not null
user_id             string, not null
character_id        string, not null
model_version       string, not null
arm                 string, nullable
started_at          timestamp[us, tz=UTC], not null
messages            list<struct<role: string, content: string,
                    signals: struct<continued: bool, thumbs: string>,
                    response_id: string>>, not null
metadata            string (a JSON object, serialised), nullable
==================  ==========================================================

Messages are a nested ``list<struct>`` rather than a JSON string because
``datasets.load_dataset("parquet", data_files=...)`` loads it as a list of dicts
(exactly the chat-template shape), and Arrow can filter/explode it without
parsing. ``metadata`` is free-form (its keys differ per producer), which a fixed
Arrow struct cannot hold, so it is stored as a JSON string; ``read_conversations``
decodes it back into a dict.

The writer buffers rows and writes one row group per batch, into a temporary file
that is renamed over the destination only on ``commit()``, so a crash never
leaves a half-written ``conversations.parquet`` behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from characterflywheel import artifacts
from characterflywheel.data._atomic import temporary_sibling
from characterflywheel.data.schema import DEFAULT_LIMITS, Conversation, SchemaLimits, validate_conversation

SIGNALS_TYPE = pa.struct([pa.field("continued", pa.bool_()), pa.field("thumbs", pa.string())])
MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
        pa.field("signals", SIGNALS_TYPE),
        pa.field("response_id", pa.string()),
    ]
)
CONVERSATIONS_SCHEMA = pa.schema(
    [
        pa.field("conversation_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("character_id", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("arm", pa.string()),
        pa.field("started_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("messages", pa.list_(pa.field("item", MESSAGE_TYPE, nullable=False)), nullable=False),
        pa.field("metadata", pa.string()),
    ],
    metadata={b"characterflywheel.schema": b"conversations/v1", b"metadata_column": b"json"},
)

DEFAULT_ROWS_PER_GROUP = 2048
DEFAULT_BYTES_PER_GROUP = 64 * 1024 * 1024


def conversation_to_row(conversation: Conversation) -> dict[str, Any]:
    """A Conversation as a dict matching ``CONVERSATIONS_SCHEMA``."""
    row = conversation.model_dump(mode="python")
    row["metadata"] = (
        None
        if conversation.metadata is None
        else json.dumps(conversation.metadata, ensure_ascii=False, separators=(",", ":"))
    )
    return row


def row_to_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row read from Parquet back into the validation input shape (metadata decoded)."""
    record = dict(row)
    if isinstance(record.get("metadata"), str):
        record["metadata"] = json.loads(record["metadata"])
    return record


class ConversationParquetWriter:
    """Stream Conversations into a Parquet file, atomically (temp file + rename)."""

    def __init__(
        self,
        destination: Path,
        rows_per_group: int = DEFAULT_ROWS_PER_GROUP,
        bytes_per_group: int = DEFAULT_BYTES_PER_GROUP,
    ) -> None:
        self.destination = Path(destination)
        self.temporary = temporary_sibling(self.destination)
        self._rows_per_group = rows_per_group
        self._bytes_per_group = bytes_per_group
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0
        self._writer = pq.ParquetWriter(self.temporary, CONVERSATIONS_SCHEMA, compression="zstd")
        self.rows_written = 0

    def write(self, conversation: Conversation) -> None:
        self._buffer.append(conversation_to_row(conversation))
        self._buffer_bytes += sum(len(message.content) for message in conversation.messages) + 256
        if len(self._buffer) >= self._rows_per_group or self._buffer_bytes >= self._bytes_per_group:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_pylist(self._buffer, schema=CONVERSATIONS_SCHEMA)
        self._writer.write_table(table)
        self.rows_written += len(self._buffer)
        self._buffer = []
        self._buffer_bytes = 0

    def commit(self) -> Path:
        """Flush, close and move the file into place."""
        self._flush()
        self._writer.close()
        os.replace(self.temporary, self.destination)
        return self.destination

    def abort(self) -> None:
        """Close and delete the temporary file; the destination is untouched."""
        try:
            self._writer.close()
        finally:
            self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> ConversationParquetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()


def _parquet_file_for(dataset_dir_or_file: Path) -> Path:
    path = Path(dataset_dir_or_file)
    return path / artifacts.CONVERSATIONS if path.is_dir() else path


def iter_parquet_rows(path: Path, batch_size: int = 1024) -> Iterator[dict[str, Any]]:
    """Rows of any Parquet file as Python dicts, streamed batch by batch."""
    parquet_file = pq.ParquetFile(path)
    try:
        for batch in parquet_file.iter_batches(batch_size=batch_size):
            yield from batch.to_pylist()
    finally:
        parquet_file.close()


def read_conversations(
    dataset_dir_or_file: Path, limits: SchemaLimits = DEFAULT_LIMITS
) -> Iterator[Conversation]:
    """Stream Conversations back from an ingested dataset (its directory or the .parquet file)."""
    for row in iter_parquet_rows(_parquet_file_for(dataset_dir_or_file)):
        yield validate_conversation(row_to_record(row), limits)
