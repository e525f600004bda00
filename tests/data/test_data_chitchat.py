"""Seed traffic from the Chit Chat Challenge dataset: every conversation converts, passes the
schema through a full JSONL -> ingest -> Parquet trip, and keeps the structure of the original."""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

import pytest

from characterflywheel.data import Conversation, ingest, iter_chitchat_conversations, write_seed_traffic
from characterflywheel.data.chitchat import (
    SEED_MODEL_VERSION,
    convert_chitchat_conversation,
    load_raw_chitchat,
)
from characterflywheel.data.schema import MAX_CONTENT_BYTES

pytest.importorskip("chitchat_dataset")

TOTAL_CONVERSATIONS = 7168
# The raw data has 4,018 conversations with two senders, but in one of them
# (1f48d55a-...) the first sender's only bubble is empty: it converts as one-sided.
TWO_SPEAKER_CONVERSATIONS = 4017
ONE_SIDED_CONVERSATIONS = 3151
TOTAL_TURNS = 138_716


@pytest.fixture(scope="module")
def raw() -> dict[str, dict]:
    return load_raw_chitchat()


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("seed") / "seed.jsonl"
    return path, write_seed_traffic(path)


@pytest.fixture(scope="module")
def seed(seed_file: tuple[Path, int]) -> list[Conversation]:
    path, _ = seed_file
    return [Conversation.model_validate_json(line) for line in path.read_text("utf-8").splitlines()]


def test_full_dataset_converts_and_every_record_passes_ingest(seed_file: tuple[Path, int], tmp_path: Path) -> None:
    path, count = seed_file
    assert count == TOTAL_CONVERSATIONS
    report = ingest([path], tmp_path / "out", progress=False)
    assert (report.read, report.accepted, report.quarantined) == (TOTAL_CONVERSATIONS, TOTAL_CONVERSATIONS, 0)


def test_speaker_split_and_turn_totals(seed: list[Conversation]) -> None:
    two_speaker = [c for c in seed if c.metadata and c.metadata["two_speaker"]]
    one_sided = [c for c in seed if c.metadata and not c.metadata["two_speaker"]]
    assert (len(two_speaker), len(one_sided)) == (TWO_SPEAKER_CONVERSATIONS, ONE_SIDED_CONVERSATIONS)
    assert all([m.role for m in c.messages] == ["user"] for c in one_sided)
    assert sum(len(c.messages) for c in seed) == TOTAL_TURNS


def test_roles_alternate_and_continued_means_the_user_spoke_again(seed: list[Conversation]) -> None:
    for conversation in seed:
        roles = [message.role for message in conversation.messages]
        assert roles[0] == "user"
        assert all(a != b for a, b in zip(roles, roles[1:]))
        for index, message in enumerate(conversation.messages):
            if message.role == "assistant":
                user_spoke_again = "user" in roles[index + 1 :]
                assert message.signals is not None
                assert (message.signals.continued, message.signals.thumbs) == (user_spoke_again, None)
                assert message.response_id == f"{conversation.conversation_id}-{index}"
            else:
                assert message.signals is None


def test_ids_and_provenance(seed: list[Conversation], raw: dict[str, dict]) -> None:
    assert [c.conversation_id for c in seed] == [f"chitchat-{original}" for original in raw]
    first_id, first_raw = next(iter(raw.items()))
    first = seed[0]
    assert first.user_id == f"chitchat-{first_raw['messages'][0][0]['sender']}"
    assert first.started_at.isoformat().replace("+00:00", "Z") == first_raw["start"]
    assert first.model_version == SEED_MODEL_VERSION and first.character_id == "chitchat-human"
    assert first.metadata is not None
    assert (first.metadata["original_id"], first.metadata["prompt"]) == (first_id, first_raw["prompt"])
    assert first.metadata["ratings"] == first_raw["ratings"]


def test_turns_are_merged_runs_of_bubbles(seed: list[Conversation], raw: dict[str, dict]) -> None:
    for conversation, original in list(zip(seed, raw.values()))[:200]:
        bubbles = [(b["sender"], b["text"]) for run in original["messages"] for b in run if b["text"].strip()]
        runs = ["\n".join(text for _, text in group) for _, group in groupby(bubbles, key=lambda b: b[0])]
        if len({sender for sender, _ in bubbles}) == 1:
            runs = ["\n".join(runs)]
        assert [message.content for message in conversation.messages] == runs


def test_overlong_monologues_are_cut_at_a_bubble_and_recorded(seed: list[Conversation]) -> None:
    truncated = [c for c in seed if c.metadata and "truncated_turns" in c.metadata]
    assert len(truncated) == 2
    for conversation in truncated:
        for index in conversation.metadata["truncated_turns"]:  # type: ignore[index]
            content = conversation.messages[index].content
            assert MAX_CONTENT_BYTES - 1000 < len(content.encode()) <= MAX_CONTENT_BYTES


def test_options_limit_two_speaker_character_and_system_prompt() -> None:
    conversations = list(
        iter_chitchat_conversations(
            limit=25, two_speaker_only=True, character_id="pirate-ann", system_prompt="You are Ann, a pirate."
        )
    )
    assert len(conversations) == 25
    for conversation in conversations:
        assert conversation.character_id == "pirate-ann"
        assert conversation.messages[0].role == "system"
        assert conversation.messages[0].content == "You are Ann, a pirate."
        assert "assistant" in {message.role for message in conversation.messages}
    assert [c.to_record() for c in iter_chitchat_conversations(limit=25, two_speaker_only=True)] == [
        c.to_record() for c in iter_chitchat_conversations(limit=25, two_speaker_only=True)
    ]


def test_write_seed_traffic_limit_and_kwargs(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "seed.jsonl"
    assert write_seed_traffic(path, limit=10, character_id="chef-luigi") == 10
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 10 and {r["character_id"] for r in records} == {"chef-luigi"}


def test_edge_cases_of_the_converter() -> None:
    def bubble(sender: str, text: str) -> dict[str, str]:
        return {"sender": sender, "text": text, "timestamp": "2018-05-01T00:00:00Z"}

    assert convert_chitchat_conversation("x", {"messages": [[bubble("a", "  ")]], "start": "bad"}) is None
    conversation = convert_chitchat_conversation(
        "y",
        {"messages": [[bubble("a", "hi")], [bubble("b", " ")], [bubble("a", "anyone?")], [bubble("b", "yes")]]},
    )
    assert conversation is not None
    assert [(m.role, m.content) for m in conversation.messages] == [("user", "hi\nanyone?"), ("assistant", "yes")]
    assert conversation.messages[1].signals is not None and conversation.messages[1].signals.continued is False
    assert conversation.started_at.year == 2018  # fixed base date when "start" is missing
