"""The gateway's traffic log: an append-only event file, folded into the traffic schema.

The OpenAI chat API is stateless: every request carries the whole history and signals arrive
later, keyed by response id. So the gateway appends one *event* per exchange and per signal to
``events.jsonl``, flushed as it is written (a killed server loses nothing the OS has), and
``fold_events`` turns events into one conversation per line in the foundation's traffic schema
(``characterflywheel.data.schema``): each assistant turn the gateway generated carries its
``response_id`` and the signals that came for it. ``fold_events`` can run on shutdown or any time
later, on the same file appended to by several gateway runs.

How exchanges become conversations (nothing the gateway served is dropped):

* Exchanges are grouped by ``conversation_id`` and taken in log order (the order replies were
  produced; a client waits for a reply before sending the next turn).
* Each exchange's prompt plus its reply is a transcript. An exchange whose prompt *extends* an
  existing transcript of its conversation (same roles and contents, the earlier replies included)
  continues it; any other exchange starts a new *branch*: a regenerated reply, an edited
  history, or a new session reusing the default ``user:character`` conversation id. The first
  branch keeps the conversation id, later ones get ``<id>#2``, ``<id>#3``, ... (made unique).
* A blank reply (a model can emit a stop token first) cannot be stored: the schema requires
  non-blank content. It is left out of the transcript (the client's blank echo of it as well),
  counted in ``FoldReport.empty_replies`` and its response id kept in the conversation's
  ``metadata.empty_reply_ids``, so every exchange is still accounted for.
* A conversation whose turns came from more than one model version (a pinned evaluation next to
  routed traffic, or weights changed across a restart) is labelled with its last version and
  lists the per-turn versions in ``metadata.model_versions``.
* ``started_at`` is the client's ``session_started_at`` of the branch's first exchange when given
  (the simulator sends simulated times), else the time the gateway received that request.
* A line torn by a kill mid-write is counted in ``bad_lines``, never silently skipped, and
  ``EventLog`` starts a fresh line when it reopens such a file so the next event stays readable.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from characterflywheel.data.jsonl import dumps, write_jsonl
from characterflywheel.data.schema import validate_conversation



def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventLog:
    """Thread-safe appender; one JSON object per line, flushed per event.

    ``written`` counts the events appended by this instance (not those already in the file).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self.written: dict[str, int] = {"exchange": 0, "feedback": 0}
        if _ends_mid_line(self.path):  # a previous run was killed mid-write: keep our first event apart
            self._handle.write("\n")
            self._handle.flush()

    def append(self, event: Mapping[str, Any]) -> None:
        line = dumps(event) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
            self.written[event["event"]] = self.written.get(event["event"], 0) + 1

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                self._handle.close()

    @property
    def closed(self) -> bool:
        return self._handle.closed


def _ends_mid_line(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(0, 2)
        if handle.tell() == 0:
            return False
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


@dataclass(frozen=True)
class FoldReport:
    exchanges: int
    feedback: int
    conversations: int
    unmatched_feedback: int
    bad_lines: int
    branches: int = 0
    """Conversations beyond the first of a conversation id (regenerations, new sessions)."""
    empty_replies: int = 0
    """Blank replies left out of transcripts (their ids are in the conversations' metadata)."""
    invalid: int = 0
    """Folded conversations that fail the traffic schema (written anyway: ingest quarantines them)."""
    assistant_turns: int = 0
    """Assistant turns carrying a gateway ``response_id`` (== exchanges - empty_replies)."""


def read_events(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The events of a log in file order, and the number of unreadable (torn) lines."""
    events, bad = [], 0
    with Path(path).open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                bad += 1  # a line torn by a kill mid-write; counted, never silently dropped
                continue
            if isinstance(event, dict):
                events.append(event)
            else:
                bad += 1
    return events, bad


def known_response_ids(path: Path) -> set[str]:
    """Response ids of the exchanges already in a log (so feedback survives a restart)."""
    if not Path(path).exists():
        return set()
    events, _ = read_events(path)
    return {e["response_id"] for e in events if e.get("event") == "exchange" and "response_id" in e}


def _key(message: Mapping[str, Any]) -> tuple[str, str]:
    return message["role"], message["content"]


def _stored(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The turns a transcript can hold: blank ones (an empty reply echoed back) are left out."""
    return [m for m in messages if isinstance(m.get("content"), str) and m["content"].strip()]


class _Branch:
    def __init__(self, first: Mapping[str, Any]) -> None:
        self.first = first
        self.exchanges: list[Mapping[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.empty_reply_ids: list[str] = []

    def extended_by(self, prompt: Sequence[Mapping[str, Any]]) -> bool:
        return len(prompt) >= len(self.messages) and all(
            _key(mine) == _key(theirs) for mine, theirs in zip(self.messages, prompt)
        )

    def add(self, exchange: Mapping[str, Any], prompt: Sequence[Mapping[str, Any]]) -> None:
        self.messages.extend({"role": m["role"], "content": m["content"]} for m in prompt[len(self.messages):])
        if exchange["reply"].strip():
            self.messages.append({"role": "assistant", "content": exchange["reply"],
                                  "response_id": exchange["response_id"]})
        else:
            self.empty_reply_ids.append(exchange["response_id"])
        self.exchanges.append(exchange)


def _branches(exchanges: Iterable[Mapping[str, Any]]) -> list[_Branch]:
    branches: list[_Branch] = []
    for exchange in exchanges:
        prompt = _stored(exchange["messages"])
        # The most recent branch it extends (a regeneration leaves the older branch behind).
        branch = next((b for b in reversed(branches) if b.extended_by(prompt)), None)
        if branch is None:
            branch = _Branch(exchange)
            branches.append(branch)
        branch.add(exchange, prompt)
    return branches


def _conversation(conversation_id: str, branch: _Branch, signals: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    first, last = branch.first, branch.exchanges[-1]
    messages = [{**m, "signals": signals[m["response_id"]]} if m.get("response_id") in signals else m
                for m in branch.messages]
    record: dict[str, Any] = {
        "conversation_id": conversation_id,
        "user_id": first["user_id"],
        "character_id": first["character_id"],
        "model_version": last["model_version"],
        "arm": last["arm"],
        "started_at": first.get("session_started_at") or first.get("received_at") or first["at"],
        "messages": messages,
    }
    metadata: dict[str, Any] = {}
    versions = [e["model_version"] for e in branch.exchanges]
    if len(set(versions)) > 1:
        metadata["model_versions"] = versions
    if branch.empty_reply_ids:
        metadata["empty_reply_ids"] = list(branch.empty_reply_ids)
    if metadata:
        record["metadata"] = metadata
    return record


def fold_events(events_path: Path, out_path: Path) -> FoldReport:
    """Fold the event log into traffic-schema conversations (JSONL), written atomically."""
    events, bad = read_events(events_path)
    by_conversation: dict[str, list[dict[str, Any]]] = {}
    signals: dict[str, dict[str, Any]] = {}
    known_ids: set[str] = set()
    n_feedback = 0
    for event in events:
        if event.get("event") == "exchange":
            by_conversation.setdefault(event["conversation_id"], []).append(event)
            known_ids.add(event["response_id"])
        elif event.get("event") == "feedback":
            n_feedback += 1
            merged = signals.setdefault(event["response_id"], {"continued": None, "thumbs": None})
            for key in ("continued", "thumbs"):
                if event.get(key) is not None:
                    merged[key] = event[key]
    used_ids = set(by_conversation)
    records: list[dict[str, Any]] = []
    n_branches = 0
    for conversation_id, exchanges in by_conversation.items():  # dicts keep first-seen (log) order
        for index, branch in enumerate(_branches(exchanges)):
            branch_id = conversation_id
            if index:
                n_branches += 1
                suffix = index + 1
                while (branch_id := f"{conversation_id}#{suffix}") in used_ids:
                    suffix += 1
                used_ids.add(branch_id)
            records.append(_conversation(branch_id, branch, signals))
    invalid = 0
    for record in records:
        try:
            validate_conversation(record)
        except ValidationError:
            invalid += 1
    write_jsonl(out_path, records)
    n_exchanges = sum(len(v) for v in by_conversation.values())
    empty = sum(len(r.get("metadata", {}).get("empty_reply_ids", ())) for r in records)
    turns = sum(1 for r in records for m in r["messages"] if "response_id" in m)
    return FoldReport(n_exchanges, n_feedback, len(records), len(set(signals) - known_ids), bad,
                      branches=n_branches, empty_replies=empty, invalid=invalid, assistant_turns=turns)
