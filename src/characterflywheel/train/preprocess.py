"""Read the contract JSONL sets into TRL's conversational columns, and prepare prompt histories.

Inputs (see the artifact contract): an SFT set (``messages`` ending with an assistant turn), a
preference set (``prompt`` / ``chosen`` / ``rejected``) and a prompts set (``prompt``). Each is turned
into the column layout TRL's trainers read:

* SFT -> conversational prompt-completion (``prompt`` = the history, ``completion`` = the final
  assistant turn), so SFTTrainer computes the loss on the reply only (``completion_only_loss``).
* DPO -> ``prompt`` / ``chosen`` / ``rejected`` message lists, unchanged.
* GRPO / Online DPO -> ``prompt`` only.

Two preparations are our own code because TRL has no equivalent:

* ``strip_history_features`` (the paper's history-bias mitigation, 7.5): remove a feature such as
  emoji from the *history* (every prompt message) and never from the training target, so the child
  does not learn "the conversation had emoji, so reply with emoji" from its own past outputs.
  Emoji detection reuses :func:`characterflywheel.characters.instructions.count_emoji`'s per-grapheme
  rule (``is_emoji_cluster``), so what is stripped is exactly what the monitors count.
* ``fit_history``: TRL truncates a too-long sequence by cutting tokens from one end, which for chat
  data cuts either the system prompt or the reply being trained on. We instead drop the oldest
  non-system history messages until prompt + reply fit ``max_length`` (the last user turn is always
  kept); an example that still does not fit is dropped and counted.

A malformed record raises :class:`TrainDataError` with one line naming the file, the record (1-based
line) and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import regex

from characterflywheel.data.records import PreferencePair, Prompt, SFTRow, read_records
from characterflywheel.characters.instructions import is_emoji_cluster

Message = dict[str, str]

_GRAPHEME = regex.compile(r"\X")


class TrainDataError(ValueError):
    """A bad training record; ``str(error)`` is one line naming file, record and field."""


# ---------------------------------------------------------------------------------------------
# History features
# ---------------------------------------------------------------------------------------------


def strip_emoji(text: str) -> str:
    """``text`` without emoji (same per-grapheme rule as ``count_emoji``).

    Each removed emoji takes the spaces before it along (or, at the start of a line, the spaces
    after it), so "so fun 😂 see" becomes "so fun see"; other text is left exactly as it was.
    """
    if text.isascii():
        return text
    pieces: list[str] = []
    drop_leading_space = False
    for cluster in _GRAPHEME.findall(text):
        if is_emoji_cluster(cluster):
            while pieces and pieces[-1] in (" ", "\t"):
                pieces.pop()
            drop_leading_space = not pieces or pieces[-1] in ("\n", "\r\n")
            continue
        if drop_leading_space and cluster in (" ", "\t"):
            continue
        drop_leading_space = False
        pieces.append(cluster)
    return "".join(pieces)


FEATURE_STRIPPERS: dict[str, Callable[[str], str]] = {"emoji": strip_emoji}


def strip_history(prompt: Sequence[Message], features: Sequence[str]) -> list[Message]:
    """A copy of the prompt messages with ``features`` removed from every message's content.

    Only the prompt (history) is touched; callers never pass the target reply here.
    The system prompt is left alone: it is the creator's character card, not history.
    """
    unknown = [name for name in features if name not in FEATURE_STRIPPERS]
    if unknown:
        raise ValueError(f"strip_history_features: unknown feature(s) {unknown}; known: {sorted(FEATURE_STRIPPERS)}")
    stripped: list[Message] = []
    for message in prompt:
        content = message["content"]
        if message["role"] != "system":
            for name in features:
                content = FEATURE_STRIPPERS[name](content)
        stripped.append({**message, "content": content})
    return stripped


# ---------------------------------------------------------------------------------------------
# Fitting histories into max_length
# ---------------------------------------------------------------------------------------------


def _token_count(tokenizer: Any, messages: Sequence[Message]) -> int:
    ids = tokenizer.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def fit_history(
    prompt: Sequence[Message], replies: Sequence[Sequence[Message]], tokenizer: Any, max_length: int
) -> list[Message] | None:
    """The prompt with its oldest non-system messages dropped until prompt + the longest reply fit
    ``max_length`` tokens; ``None`` when even the last user turn alone does not fit.

    The history always starts after the system message with a user turn (a dropped user turn takes
    its assistant answer with it), as chat templates expect alternation.
    """
    system = [message for message in prompt[:1] if message["role"] == "system"]
    turns = list(prompt[len(system):])
    while turns:
        longest = max(_token_count(tokenizer, [*system, *turns, *reply]) for reply in replies) if replies else (
            _token_count(tokenizer, [*system, *turns])
        )
        if longest <= max_length:
            return [*system, *turns]
        if len(turns) == 1:
            return None
        turns = turns[1:]
        while len(turns) > 1 and turns[0]["role"] != "user":
            turns = turns[1:]
    return None


# ---------------------------------------------------------------------------------------------
# Reading the contract sets
# ---------------------------------------------------------------------------------------------


def _checked(path: Path, shape: type[SFTRow] | type[PreferencePair] | type[Prompt]) -> list[dict[str, Any]]:
    """The file's records checked as ``shape`` (``data.records``, the shapes every stage shares)."""
    if not path.is_file():
        raise TrainDataError(f"{path}: file not found")
    try:
        return read_records(path, shape)
    except ValueError as error:
        raise TrainDataError(str(error)) from None


def _plain(messages: Sequence[Message]) -> list[Message]:
    return [{"role": message["role"], "content": message["content"]} for message in messages]


def read_sft_records(path: Path) -> list[dict[str, list[Message]]]:
    """SFT set -> ``[{"prompt": history, "completion": [final assistant turn]}]``.

    A record's optional ``weight`` (a whole number >= 1, default 1) repeats it that many times: the
    data-mixing weight the sampling stage chose (TRL's SFTTrainer has no per-example loss weight, and
    repeating is what a weighted mixture does at this size)."""
    rows = []
    for record in _checked(path, SFTRow):
        messages = _plain(record["messages"])
        rows += [{"prompt": messages[:-1], "completion": messages[-1:]}] * record.get("weight", 1)
    return rows


def read_preference_records(path: Path) -> list[dict[str, list[Message]]]:
    """Preference set -> ``[{"prompt", "chosen", "rejected"}]`` (each reply one assistant turn)."""
    return [{field: _plain(record[field]) for field in ("prompt", "chosen", "rejected")}
            for record in _checked(path, PreferencePair)]


def read_prompt_rows(path: Path) -> list[dict[str, list[Message]]]:
    """Prompts set -> ``[{"prompt": messages ending with a user turn}]``."""
    return [{"prompt": _plain(record["prompt"])} for record in _checked(path, Prompt)]


def prepare_rows(
    rows: list[dict[str, list[Message]]],
    tokenizer: Any,
    max_length: int,
    strip_features: Sequence[str] = (),
    reply_fields: Sequence[str] = (),
) -> tuple[list[dict[str, list[Message]]], int]:
    """Strip history features from each ``prompt`` and fit it to ``max_length`` (with the longest of
    ``reply_fields``); returns the kept rows and how many were dropped as too long."""
    kept, dropped = [], 0
    for row in rows:
        prompt = strip_history(row["prompt"], strip_features) if strip_features else row["prompt"]
        fitted = fit_history(prompt, [row[field] for field in reply_fields], tokenizer, max_length)
        if fitted is None:
            dropped += 1
            continue
        kept.append({**row, "prompt": fitted})
    return kept, dropped
