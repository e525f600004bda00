"""Prompt records: one per assistant turn, history capped, depth and signals carried, counts reconcile."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from characterflywheel.curate.prompts import PROMPTS_FILENAME, PromptsReport, explode_prompts, run_prompts
from characterflywheel.curate.records import read_prompt_records, validate_prompt_record
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.data import Conversation


def conversation(messages, conversation_id="c-1") -> Conversation:
    return Conversation(conversation_id=conversation_id, user_id="u-1", character_id="pirate", model_version="gen-0",
                        arm="control", started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), messages=messages)


def assistant(text, continued=None, thumbs=None):
    return {"role": "assistant", "content": text, "signals": {"continued": continued, "thumbs": thumbs}}


def test_one_prompt_per_assistant_turn_with_capped_history_depth_and_signals():
    chat = conversation([
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "u1"}, assistant("a1", True, "up"),
        {"role": "user", "content": "u2"}, assistant("a2", True, None),
        {"role": "user", "content": "u3"}, {"role": "user", "content": "u3b"}, assistant("a3", False, "down"),
    ])
    report = PromptsReport()
    records = list(explode_prompts([chat], max_history_turns=3, report=report))
    assert [r["reply"] for r in records] == ["a1", "a2", "a3"]
    assert [r["depth"] for r in records] == [1, 2, 4]
    assert records[0]["prompt"] == [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "u1"}]
    # capped to the last 3 messages, the system turn kept in front
    assert [m["content"] for m in records[2]["prompt"]] == ["You are a pirate.", "a2", "u3", "u3b"]
    assert (records[0]["continued"], records[0]["thumbs"]) == (True, "up")
    assert (records[2]["continued"], records[2]["thumbs"]) == (False, "down")
    assert records[1]["prompt_id"] == "c-1:4" and records[1]["arm"] == "control"
    for record in records:
        validate_prompt_record(record, "test")
    assert (report.conversations, report.assistant_turns, report.prompts) == (1, 3, 3)


def test_turns_not_answering_a_user_are_skipped_and_counted():
    chat = conversation([
        assistant("greeting"), {"role": "user", "content": "hi"}, assistant("a1"), assistant("double text"),
    ])
    report = PromptsReport()
    records = list(explode_prompts([chat], 8, report))
    assert [r["reply"] for r in records] == ["a1"]
    assert report.skipped == {"no_user_before": 1, "after_assistant": 1}
    assert report.assistant_turns == report.prompts + sum(report.skipped.values())


def test_run_prompts_on_ingested_chitchat(chitchat_parquet, tmp_path):
    report = run_prompts(chitchat_parquet, tmp_path, CurateConfig(max_history_turns=4))
    records = list(read_prompt_records(tmp_path / PROMPTS_FILENAME))
    assert report.conversations == 40 and len(records) == report.prompts > 40
    assert report.assistant_turns == report.prompts + sum(report.skipped.values())
    assert all(len([m for m in r["prompt"] if m["role"] != "system"]) <= 4 for r in records)
    assert (tmp_path / "prompts_report.json").is_file()


def test_bad_prompt_record_is_a_one_line_error_naming_file_line_and_field(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt_id": "p", "conversation_id": "c", "user_id": "u", "character_id": "x", '
                    '"model_version": "m", "depth": 1, "prompt": [{"role": "assistant", "content": "hi"}], '
                    '"reply": "r"}\n')
    with pytest.raises(ValueError, match=r"prompts.jsonl:1 \(prompt_id p\): prompt: must end with a user turn"):
        list(read_prompt_records(path))
