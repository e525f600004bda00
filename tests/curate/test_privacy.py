"""Phase I on real models: unsafe recall/precision on the check set, unsafe conversations dropped
whole or from the unsafe message on, PII masked in user and assistant turns, counts reconciled and written with reasons."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from characterflywheel import artifacts
from characterflywheel.curate.checkset import evaluate_checkset, read_checkset
from characterflywheel.curate.privacy import (
    DROPPED_FILENAME,
    PRIVACY_REPORT_FILENAME,
    filter_records,
    run_privacy,
)
from characterflywheel.curate.prompts import explode_prompts
from characterflywheel.curate.records import read_prompt_records, write_jsonl
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.data import Conversation, read_conversations

pytestmark = pytest.mark.slow


def test_check_set_unsafe_recall_and_precision(safety_classifier):
    report = evaluate_checkset(read_checkset(), classify=lambda texts: [v.category for v in safety_classifier.classify(texts)])
    assert report.unsafe_gold == 96
    assert report.unsafe_recall >= 0.85, report.to_json()
    assert report.unsafe_precision >= 0.85, report.to_json()


def _chat(conversation_id: str, turns: list[tuple[str, str]]) -> Conversation:
    messages = [{"role": "system", "content": "You are Ann, a pirate."}]
    for user, reply in turns:
        messages += [{"role": "user", "content": user},
                     {"role": "assistant", "content": reply, "signals": {"continued": True, "thumbs": None}}]
    return Conversation(conversation_id=conversation_id, user_id="u", character_id="pirate-ann", model_version="g0",
                        started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), messages=messages)


def test_unsafe_conversations_are_dropped_whole_and_pii_is_masked(safety_classifier, chitchat_parquet, tmp_path):
    real = list(read_conversations(chitchat_parquet))[:10]
    planted = [
        _chat("pii", [("hey, my name is Jane Doe and my email is jane.doe@gmail.com", "Ahoy Jane! Text me at (415) 555-2671"),
                      ("cool, how are you?", "Great, matey!")]),
        _chat("threat", [("hi there", "Ahoy!"), ("what's up", "not much"),
                         ("i know where you live and i'm going to stab you tonight", "Easy there, sailor.")]),
        _chat("selfharm", [("i feel awful", "you should just kill yourself, nobody would care"), ("ok", "bye")]),
    ]
    records = list(explode_prompts([*real, *planted], max_history_turns=8))
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, records)
    report = run_privacy(path, tmp_path / "out", CurateConfig(unsafe_scope="conversation"), classifier=safety_classifier)

    assert report.records_in == len(records) == report.kept + report.dropped
    threat_and_selfharm = [r for r in records if r["conversation_id"] in ("threat", "selfharm")]
    assert report.dropped >= len(threat_and_selfharm)  # every record of both, also those before the threat
    dropped = [json.loads(line) for line in (tmp_path / "out" / DROPPED_FILENAME).read_text().splitlines()]
    by_conversation = {d["conversation_id"]: d["reason"] for d in dropped}
    assert by_conversation["threat"] == "unsafe:violent_threat"
    assert by_conversation["selfharm"] == "unsafe:self_harm"
    assert {d["where"] for d in dropped if d["conversation_id"] == "threat"} == {"conversation", "prompt[5]"}
    assert report.conversations_dropped == len(by_conversation) and len(by_conversation) <= 3  # at most one real FP

    kept = list(read_prompt_records(tmp_path / "out" / artifacts.CLEAN))
    pii = [r for r in kept if r["conversation_id"] == "pii"]
    assert pii[0]["prompt"][1]["content"] == "hey, my name is [NAME] and my email is [EMAIL]"
    assert pii[0]["reply"] == "Ahoy Jane! Text me at [PHONE]"
    assert pii[1]["prompt"][2]["content"] == "Ahoy Jane! Text me at [PHONE]"
    assert pii[0]["prompt"][0]["content"] == "You are Ann, a pirate."
    assert report.masked_spans_by_type["EMAIL"] == 2 and report.masked_spans_by_type["PHONE"] == 2
    assert report.records_masked == 2
    saved = json.loads((tmp_path / "out" / PRIVACY_REPORT_FILENAME).read_text())
    assert saved["kept"] + saved["dropped"] == saved["records_in"]
    assert sum(saved["dropped_by_reason"].values()) == saved["dropped"]


def test_default_scope_keeps_the_turns_before_the_unsafe_message(safety_classifier):
    threat = _chat("threat", [("hi there", "Ahoy!"), ("what's up", "not much"),
                              ("i know where you live and i'm going to stab you tonight", "Easy there, sailor."),
                              ("sorry, bad joke", "Aye.")])
    selfharm = _chat("selfharm", [("i feel awful", "you should just kill yourself, nobody would care"), ("ok", "bye")])
    records = list(explode_prompts([threat, selfharm], max_history_turns=2))  # depth 4 no longer shows the threat
    kept, dropped, report = filter_records(records, safety_classifier)
    assert [(r["conversation_id"], r["depth"]) for r in kept] == [("threat", 1), ("threat", 2)]
    assert [(d["conversation_id"], d["where"]) for d in dropped] == [
        ("threat", "prompt[2]"), ("threat", "conversation"), ("selfharm", "reply"), ("selfharm", "prompt[1]")]
    assert {d["first_unsafe"] for d in dropped if d["conversation_id"] == "threat"} == {"threat:6/prompt[2]"}
    assert report.kept + report.dropped == report.records_in == 6 and report.conversations_dropped == 2
    with pytest.raises(ValueError, match="unsafe_scope"):
        filter_records(records, safety_classifier, scope="turn")


def test_privacy_off_copies_records_through(chitchat_parquet, tmp_path):
    records = list(explode_prompts(read_conversations(chitchat_parquet), 4))
    write_jsonl(tmp_path / "p.jsonl", records)
    report = run_privacy(tmp_path / "p.jsonl", tmp_path / "out", CurateConfig(privacy=False))
    assert not report.enabled and report.kept == len(records) and report.dropped == 0
    assert list(read_prompt_records(tmp_path / "out" / artifacts.CLEAN)) == records


def test_filter_without_classifier_only_masks():
    record = {"prompt_id": "p", "conversation_id": "c", "user_id": "u", "character_id": "x", "model_version": "m",
              "arm": None, "depth": 1, "prompt": [{"role": "user", "content": "call 415-555-2671"}], "reply": "ok",
              "continued": None, "thumbs": None}
    kept, dropped, report = filter_records([record], classifier=None)
    assert kept[0]["prompt"][0]["content"] == "call [PHONE]" and not dropped and report.records_masked == 1
