"""Seed traffic from real human conversations: the Chit Chat Challenge dataset.

The PyPI package ``chitchat_dataset`` ships ``dataset.json``: a dict from a
conversation UUID to ``{"messages": [[{"sender", "text", "timestamp"}, ...], ...],
"start": ISO time, "prompt": str (optional), "ratings": {...} (optional)}``; each
inner list is a run of bubbles by one sender. 7,168 conversations: 4,018 between
two people, 3,150 where one person talked alone.

Conversion (every result is validated by ``Conversation``):

* Bubbles with whitespace-only text are dropped (33 in the data); the rest are
  grouped into runs of the same role and joined with ``"\\n"`` (one bubble per
  line), so roles alternate.
* The opener (sender of the first non-empty bubble) is the ``user``; the other
  human becomes the ``assistant`` -- a human stand-in for the character, with
  ``model_version="human-seed"``. A one-sided conversation is a single user turn.
  Speakers are counted after dropping empty bubbles, so 4,017 conversations come
  out two-sided and 3,151 one-sided (in 1f48d55a-... the first sender's only
  bubble is empty; ``metadata["two_speaker"]`` records the outcome).
* ``signals.continued`` on an assistant turn = the user spoke again after it;
  ``thumbs`` is null (the data has no per-turn feedback). Assistant turns get a
  deterministic ``response_id`` (``chitchat-<id>-<turn index>``).
* Ids: ``conversation_id = "chitchat-<original id>"``, ``user_id =
  "chitchat-<opener's sender id>"`` (sender ids are stable across conversations
  in the data, so per-user statistics stay meaningful). ``started_at`` is the
  conversation's ``start``; ``SEED_BASE_TIME`` only if it is missing/unparseable.
* ``metadata`` keeps what later stages can use: the original id, the
  conversation prompt, the 1-10 ratings (interesting/upbeat/witty -- engagement
  labels), the stand-in's sender id, and the indices of truncated turns.
* A merged turn over the schema's content limit (2 in the data: 95 KB and 35 KB
  monologues) is cut at a bubble boundary to fit, and listed in
  ``metadata["truncated_turns"]``; conversations over ``max_messages`` turns are
  cut likewise (none in the data). A conversation with no text at all is skipped.

The package's own iterators (``ConversationDataset`` etc.) drop sender ids and
timestamps, so the JSON file is read directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from itertools import groupby, islice
from pathlib import Path
from typing import Any, Iterator

from characterflywheel.data._atomic import temporary_sibling
from characterflywheel.data.schema import DEFAULT_LIMITS, Conversation, Message, Signals, parse_timestamp

DEFAULT_CHARACTER_ID = "chitchat-human"
SEED_MODEL_VERSION = "human-seed"
SEED_BASE_TIME = datetime(2018, 5, 1, tzinfo=timezone.utc)
SOURCE_NAME = "chitchat_dataset"
BUBBLE_SEPARATOR = "\n"


def dataset_path() -> Path:
    """Location of the installed ``chitchat_dataset/dataset.json``."""
    return Path(str(resources.files("chitchat_dataset") / "dataset.json"))


def load_raw_chitchat(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The raw dataset: original conversation id -> conversation dict (about 40 MB of JSON)."""
    with open(path or dataset_path(), encoding="utf-8") as handle:
        return json.load(handle)


@dataclass(frozen=True)
class _Turn:
    role: str
    sender: str
    bubbles: tuple[str, ...]


def _non_empty_bubbles(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(sender, text) for every bubble with visible text, in order."""
    return [
        (bubble["sender"], bubble["text"])
        for run in raw.get("messages", [])
        for bubble in run
        if isinstance(bubble.get("text"), str) and bubble["text"].strip()
    ]


def _turns(bubbles: list[tuple[str, str]]) -> list[_Turn]:
    """Group bubbles into alternating user/assistant turns (opener = user)."""
    opener = bubbles[0][0]
    role_of = lambda sender: "user" if sender == opener else "assistant"  # noqa: E731
    turns = []
    for role, group in groupby(bubbles, key=lambda bubble: role_of(bubble[0])):
        group_list = list(group)
        turns.append(_Turn(role, group_list[0][0], tuple(text for _, text in group_list)))
    return turns


def _fit_bubbles(bubbles: tuple[str, ...], max_bytes: int) -> tuple[str, bool]:
    """Join bubbles, keeping as many leading whole bubbles as fit in ``max_bytes``."""
    joined = BUBBLE_SEPARATOR.join(bubbles)
    if len(joined.encode("utf-8")) <= max_bytes:
        return joined, False
    kept: list[str] = []
    size = 0
    for bubble in bubbles:
        extra = len(bubble.encode("utf-8")) + (len(BUBBLE_SEPARATOR) if kept else 0)
        if size + extra > max_bytes:
            break
        kept.append(bubble)
        size += extra
    if not kept:  # a single bubble over the limit: cut it on a character boundary
        kept = [bubbles[0].encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")]
    return BUBBLE_SEPARATOR.join(kept), True


def _started_at(raw: dict[str, Any]) -> datetime:
    try:
        return parse_timestamp(raw.get("start"))
    except ValueError:  # missing or unusable: fall back to the fixed base date
        return SEED_BASE_TIME


def convert_chitchat_conversation(
    original_id: str,
    raw: dict[str, Any],
    character_id: str = DEFAULT_CHARACTER_ID,
    system_prompt: str | None = None,
) -> Conversation | None:
    """One raw chitchat conversation -> Conversation (``None`` if it holds no text)."""
    bubbles = _non_empty_bubbles(raw)
    if not bubbles:
        return None
    limits = DEFAULT_LIMITS
    turns = _turns(bubbles)[: limits.max_messages - (1 if system_prompt else 0)]
    conversation_id = f"chitchat-{original_id}"
    last_user_index = max(index for index, turn in enumerate(turns) if turn.role == "user")
    messages = [Message(role="system", content=system_prompt)] if system_prompt else []
    truncated_turns = []
    for index, turn in enumerate(turns):
        content, truncated = _fit_bubbles(turn.bubbles, limits.max_content_bytes)
        if truncated:
            truncated_turns.append(index)
        if turn.role == "user":
            messages.append(Message(role="user", content=content))
        else:
            messages.append(
                Message(
                    role="assistant",
                    content=content,
                    signals=Signals(continued=index < last_user_index, thumbs=None),
                    response_id=f"{conversation_id}-{index}",
                )
            )
    stand_ins = sorted({turn.sender for turn in turns if turn.role == "assistant"})
    metadata: dict[str, Any] = {
        "source": SOURCE_NAME,
        "original_id": original_id,
        "two_speaker": bool(stand_ins),
        "assistant_sender_ids": stand_ins,
        "prompt": raw.get("prompt"),
        "ratings": raw.get("ratings"),
    }
    if truncated_turns:
        metadata["truncated_turns"] = truncated_turns
    return Conversation(
        conversation_id=conversation_id,
        user_id=f"chitchat-{bubbles[0][0]}",
        character_id=character_id,
        model_version=SEED_MODEL_VERSION,
        arm=None,
        started_at=_started_at(raw),
        messages=messages,
        metadata=metadata,
    )


def _is_two_speaker(raw: dict[str, Any]) -> bool:
    return len({sender for sender, _ in _non_empty_bubbles(raw)}) >= 2


def iter_chitchat_conversations(
    limit: int | None = None,
    two_speaker_only: bool = False,
    character_id: str = DEFAULT_CHARACTER_ID,
    system_prompt: str | None = None,
    *,
    path: Path | None = None,
) -> Iterator[Conversation]:
    """Chitchat conversations in the traffic schema, in dataset order (deterministic)."""
    raw_conversations = load_raw_chitchat(path)
    selected = (
        (original_id, raw)
        for original_id, raw in raw_conversations.items()
        if not two_speaker_only or _is_two_speaker(raw)
    )
    converted = (
        convert_chitchat_conversation(original_id, raw, character_id, system_prompt)
        for original_id, raw in selected
    )
    yield from islice((conversation for conversation in converted if conversation is not None), limit)


def write_seed_traffic(path: Path, limit: int | None = None, **kw: Any) -> int:
    """Write chitchat seed traffic as JSONL (atomically); returns the number of conversations.

    ``kw`` is passed to ``iter_chitchat_conversations`` (two_speaker_only, character_id, ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    count = 0
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            for conversation in iter_chitchat_conversations(limit=limit, **kw):
                handle.write(conversation.to_json_line() + "\n")
                count += 1
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    return count
