"""Traffic data: the conversation schema, ingest/quarantine, Parquet storage and seed traffic.

* ``schema``  -- ``Conversation``/``Message``/``Signals`` (pydantic v2, strict) and reason codes.
* ``ingest``  -- ``ingest(files, out_dir)``: JSONL / JSONL.gz / Parquet -> validated Parquet + quarantine.
* ``parquet`` -- the Arrow schema of the output, ``read_conversations`` to stream it back.
* ``chitchat``-- seed traffic from the human Chit Chat Challenge conversations.
"""

from characterflywheel.data.chitchat import iter_chitchat_conversations, write_seed_traffic
from characterflywheel.data.ingest import (
    IngestError,
    IngestReport,
    Rejection,
    ingest,
    iter_quarantine_messages,
)
from characterflywheel.data.parquet import CONVERSATIONS_SCHEMA, read_conversations
from characterflywheel.data.schema import (
    DEFAULT_LIMITS,
    MAX_CONTENT_BYTES,
    MAX_MESSAGES,
    REASONS,
    Conversation,
    Message,
    SchemaLimits,
    Signals,
    validate_conversation,
)

__all__ = [
    "CONVERSATIONS_SCHEMA",
    "DEFAULT_LIMITS",
    "MAX_CONTENT_BYTES",
    "MAX_MESSAGES",
    "REASONS",
    "Conversation",
    "IngestError",
    "IngestReport",
    "Message",
    "Rejection",
    "SchemaLimits",
    "Signals",
    "ingest",
    "iter_chitchat_conversations",
    "iter_quarantine_messages",
    "read_conversations",
    "validate_conversation",
    "write_seed_traffic",
]
