"""The event log and its fold into the traffic schema (no server: events are written directly)."""

from __future__ import annotations

import json
from pathlib import Path

from characterflywheel import artifacts
from characterflywheel.data import ingest
from characterflywheel.deploy.traffic_log import (
    EventLog,
    fold_events,
    known_response_ids,
    read_events,
)

SYSTEM = {"role": "system", "content": "You are Ann, a pirate."}


class Script:
    """Writes exchange/feedback events the way the gateway does, with a fake clock."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.clock = 0
        self.count = 0

    def _now(self) -> str:
        self.clock += 1
        return f"2026-11-02T10:00:{self.clock:02d}.000Z"

    def exchange(self, conversation_id: str, messages: list[dict], reply: str, *, user: str = "u-1",
                 version: str = "gen-0", started: str | None = None) -> str:
        self.count += 1
        response_id = f"chatcmpl-{self.count}"
        received = self._now()
        self.log.append({"event": "exchange", "at": self._now(), "received_at": received, "response_id": response_id,
                         "conversation_id": conversation_id, "user_id": user, "character_id": "ann",
                         "model_version": version, "arm": "control" if version == "gen-0" else "treatment",
                         "session_started_at": started, "metadata": {}, "messages": messages, "reply": reply})
        return response_id

    def feedback(self, response_id: str, continued: bool | None = None, thumbs: str | None = None) -> None:
        self.log.append({"event": "feedback", "at": self._now(), "response_id": response_id,
                         "continued": continued, "thumbs": thumbs})


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _assert_ingests_cleanly(traffic: Path, out: Path, expected: int) -> None:
    report = ingest([traffic], out, progress=False)
    assert (report.read, report.accepted, report.quarantined) == (expected, expected, 0)


def test_a_session_folds_into_one_conversation_with_ids_and_signals(tmp_path: Path) -> None:
    log = EventLog(tmp_path / artifacts.EVENTS)
    s = Script(log)
    history = [SYSTEM, {"role": "user", "content": "ahoy"}]
    r1 = s.exchange("c-1", list(history), "Arr!", started="2026-11-02T09:00:00Z")
    s.feedback(r1, continued=True)
    history += [{"role": "assistant", "content": "Arr!"}, {"role": "user", "content": "where's the gold?"}]
    r2 = s.exchange("c-1", list(history), "Buried, matey.", started="2026-11-02T09:00:00Z")
    s.feedback(r2, continued=False)
    s.feedback(r2, thumbs="up")  # signals for one reply merge
    s.feedback("chatcmpl-unknown", thumbs="down")
    log.close()

    report = fold_events(tmp_path / artifacts.EVENTS, tmp_path / artifacts.TRAFFIC)
    assert (report.exchanges, report.feedback, report.conversations) == (2, 4, 1)
    assert (report.unmatched_feedback, report.bad_lines, report.branches, report.assistant_turns) == (1, 0, 0, 2)
    [record] = _records(tmp_path / artifacts.TRAFFIC)
    assert record["conversation_id"] == "c-1" and record["started_at"] == "2026-11-02T09:00:00Z"
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assistant = [m for m in record["messages"] if m["role"] == "assistant"]
    assert [m["response_id"] for m in assistant] == [r1, r2]
    assert assistant[0]["signals"] == {"continued": True, "thumbs": None}
    assert assistant[1]["signals"] == {"continued": False, "thumbs": "up"}
    assert "metadata" not in record
    _assert_ingests_cleanly(tmp_path / artifacts.TRAFFIC, tmp_path / "ingested", 1)


def test_regenerations_and_reused_ids_become_branches_so_no_exchange_is_lost(tmp_path: Path) -> None:
    log = EventLog(tmp_path / artifacts.EVENTS)
    s = Script(log)
    first = [SYSTEM, {"role": "user", "content": "hi"}]
    a = s.exchange("u-1:ann", first, "Ahoy!")
    b = s.exchange("u-1:ann", first, "Ahoy there!")  # regenerated reply: same prompt
    c = s.exchange("u-1:ann", [*first, {"role": "assistant", "content": "Ahoy!"},  # continues the FIRST reply
                               {"role": "user", "content": "how are you"}], "Salty.")
    d = s.exchange("u-1:ann", [SYSTEM, {"role": "user", "content": "new day"}], "Morning!")  # a new session
    # A real conversation id that looks like a branch id: branches must not take it.
    e = s.exchange("u-1:ann#2", [SYSTEM, {"role": "user", "content": "taken id"}], "Aye.")
    log.close()

    report = fold_events(tmp_path / artifacts.EVENTS, tmp_path / artifacts.TRAFFIC)
    records = _records(tmp_path / artifacts.TRAFFIC)
    ids = [r["conversation_id"] for r in records]
    assert len(set(ids)) == len(ids) == report.conversations == 4
    assert ids == ["u-1:ann", "u-1:ann#3", "u-1:ann#4", "u-1:ann#2"]
    replies = {r["conversation_id"]: [m["response_id"] for m in r["messages"] if "response_id" in m] for r in records}
    assert replies == {"u-1:ann": [a, c], "u-1:ann#3": [b], "u-1:ann#4": [d], "u-1:ann#2": [e]}
    assert (report.exchanges, report.assistant_turns, report.branches) == (5, 5, 2)
    _assert_ingests_cleanly(tmp_path / artifacts.TRAFFIC, tmp_path / "ingested", 4)


def test_blank_replies_and_mixed_versions_are_kept_in_metadata(tmp_path: Path) -> None:
    log = EventLog(tmp_path / artifacts.EVENTS)
    s = Script(log)
    h = [SYSTEM, {"role": "user", "content": "hello?"}]
    blank = s.exchange("c-9", list(h), "")
    h += [{"role": "assistant", "content": ""}, {"role": "user", "content": "anyone there?"}]  # echoed back blank
    filled = s.exchange("c-9", list(h), "Aye, here.", version="gen-1")
    s.feedback(blank, continued=True)
    log.close()

    report = fold_events(tmp_path / artifacts.EVENTS, tmp_path / artifacts.TRAFFIC)
    assert (report.exchanges, report.empty_replies, report.assistant_turns, report.invalid) == (2, 1, 1, 0)
    [record] = _records(tmp_path / artifacts.TRAFFIC)
    assert [m["content"] for m in record["messages"]] == [SYSTEM["content"], "hello?", "anyone there?", "Aye, here."]
    assert record["metadata"] == {"model_versions": ["gen-0", "gen-1"], "empty_reply_ids": [blank]}
    assert record["model_version"] == "gen-1" and record["messages"][-1]["response_id"] == filled
    _assert_ingests_cleanly(tmp_path / artifacts.TRAFFIC, tmp_path / "ingested", 1)


def test_a_torn_line_is_counted_and_a_reopened_log_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / artifacts.EVENTS
    log = EventLog(path)
    s = Script(log)
    kept = s.exchange("c-1", [{"role": "user", "content": "one"}], "Two.")
    log.close()
    with path.open("a", encoding="utf-8") as handle:  # a kill in the middle of a write
        handle.write('{"event": "exchange", "response_id": "chatcmpl-torn", "mess')

    reopened = EventLog(path)  # the next run must not glue its first event onto the torn line
    after = Script(reopened)
    after.count = 100
    later = after.exchange("c-2", [{"role": "user", "content": "three"}], "Four.")
    reopened.close()

    events, bad = read_events(path)
    assert bad == 1 and [e["response_id"] for e in events] == [kept, later]
    assert known_response_ids(path) == {kept, later}
    report = fold_events(path, tmp_path / artifacts.TRAFFIC)
    assert (report.exchanges, report.conversations, report.bad_lines) == (2, 2, 1)
    assert known_response_ids(tmp_path / "missing.jsonl") == set()
