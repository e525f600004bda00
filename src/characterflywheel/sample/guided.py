"""Guided candidates: replies forced to open the way a character card's rules demand.

Rejection sampling can only keep a rule-abiding reply that the model writes. SmolLM2-135M
almost never does for some rules (on held-out prompts of a five-generation run: an emoji 0/40,
the required opening 0/20, the catchphrase 0/20, the required word 1/25), so for those cards no
candidate keeps the rules and the policy has nothing to learn steerability from. A guided
candidate is sampled from the same model with the reply's *opening* fixed (the chat template's
``continue_final_message``, what vLLM serves as ``continue_final_message`` and Mistral's API as a
``prefix`` message): the required opening phrase, the catchphrase and the required word, then an
emoji, and the model writes the rest. It is judged, rule-checked and selected like any other
candidate, so it becomes training data only where the judge rates it; SFT then teaches the
policy to write that opening itself (constrained decoding used for data, as in verifiable-
constraint instruction-following sets).

Why our own code: the forcing itself is the chat template's (transformers) and the server's
(vLLM); what is ours is reading an opening off the card's rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from characterflywheel.models.generation import SamplingParams, with_opening
from characterflywheel.sample.protocols import BackendFactory, ChatMessages, ModelSpec, Opening

EMOJI = ("😊", "✨", "🙂", "😄")
_CLOSING = (".", "!", "?", ",", "…")


def rule_opening(instructions: Iterable[Any], emoji: str = EMOJI[0]) -> str | None:
    """The opening that keeps a card's opening-shaped rules (``start_with``, ``use_catchphrase``,
    ``must_include_word``, ``use_emoji``), lower-cased for ``lowercase_only``; None if it has none."""
    first: list[str] = []
    rest: list[str] = []
    emoji_count = 0
    lowercase = False
    for instruction in instructions:
        kind, params = instruction.type, instruction.params
        if kind == "start_with":
            first.append(str(params["prefix"]).strip())
        elif kind == "use_catchphrase":
            rest.append(str(params["phrase"]).strip())
        elif kind == "must_include_word":
            rest.append(str(params["word"]).strip())
        elif kind == "use_emoji":
            emoji_count = max(emoji_count, int(params.get("n", 1)))
        elif kind == "lowercase_only":
            lowercase = True
    parts = [part for part in (*first, *rest) if part]
    if not parts and not emoji_count:
        return None
    # Every part but the last ends a phrase; the last is left open unless an emoji follows it.
    closed = [p if p.endswith(_CLOSING) else f"{p}!" for p in parts[:-1]]
    if parts:
        last = parts[-1]
        closed.append(last if last.endswith(_CLOSING) or not emoji_count else f"{last}!")
    text = " ".join([*closed, *([emoji] * emoji_count)])
    text = text[:1].upper() + text[1:]
    return text.lower() if lowercase else text


def card_openings(characters: Iterable[Any] | None = None) -> Opening:
    """Prompt record -> the opening its character card's rules demand (None: no such rule), with
    the emoji picked per prompt so that guided replies do not all share one."""
    from characterflywheel.characters import load_characters

    cards = {card.id: card.instructions for card in (load_characters() if characters is None else characters)}

    def opening(record: Mapping[str, Any]) -> str | None:
        instructions = cards.get(str(record.get("character_id")))
        if not instructions:
            return None
        digest = hashlib.blake2b(str(record.get("prompt_id", "")).encode(), digest_size=2).digest()
        return rule_opening(instructions, EMOJI[int.from_bytes(digest, "little") % len(EMOJI)])

    return opening


def join_opening(opening: str, continuation: str) -> str:
    """The whole reply: the forced opening, then what the model wrote after it."""
    if not continuation:
        return opening
    glue = "" if continuation[0] in ".,!?;:'’)" or opening.endswith(" ") else " "
    return f"{opening}{glue}{continuation}"


def add_guided_candidates(
    records: Sequence[Mapping[str, Any]],
    conversations: Sequence[ChatMessages],
    groups: list[list[str]],
    choice: np.ndarray,
    pool: Sequence[ModelSpec],
    backends: BackendFactory,
    opening: Opening,
    params: SamplingParams,
    progress: bool = False,
) -> list[int]:
    """Append ``params.n`` guided candidates to the group of every prompt whose card asks for an
    opening, from the prompt's chosen model; returns how many each group got."""
    added = [0] * len(records)
    openings = [opening(record) for record in records]
    for model_index, spec in enumerate(pool):
        positions = [i for i in np.flatnonzero(choice == model_index) if openings[i]]
        if not positions:
            continue
        replies = backends(spec).chat([with_opening(conversations[i], openings[i]) for i in positions], params,
                                      progress=progress)
        for position, group in zip(positions, replies, strict=True):
            groups[position].extend(join_opening(openings[position], text) for text in group)
            added[position] = len(group)
    return added
