"""How a (history, reply) or (history, reply A, reply B) becomes one encoder input.

The history is rendered as ``[system] <persona, first system_chars characters> [user] ... [assistant]
... [user] <last line>`` from the last ``history_messages`` non-system messages. Encoders get the
tokenizer's pair encoding: history as text_a, the reply as text_b (pairwise: ``reply A [SEP] reply
B`` as text_b). The token budget is split before encoding: the reply (or each of the two replies)
keeps its *beginning* up to its share of ``max_length``; the history fills what is left and keeps
its *end* (the most recent turns matter most). Cuts are made at token boundaries through the fast
tokenizer's offset mapping, so the text that is encoded is exactly the kept tokens; the final call
still truncates ("longest_first") as a safety net. transformers 5 tokenizers no longer expose
``prepare_for_model`` / ``build_inputs_with_special_tokens``, hence the string-level cut.

The ``segments`` input (``encode_segments``) encodes each part on its own instead, as
sentence-transformers does: the persona (first ``system_chars`` characters of the system prompt),
the earlier history turns, the last user line, and each reply, every one a separate sequence of at
most ``max_length`` tokens. Identical texts in a batch (the shared history of one prompt's replies)
are encoded once; ``segment_index`` maps each example's segments to the encoded rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

ChatMessages = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class InputFormat:
    """What the models saw in training; saved in reward_config.json so scoring matches."""

    max_length: int
    history_messages: int
    system_chars: int
    reply_share: float

    def to_dict(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "history_messages": self.history_messages,
                "system_chars": self.system_chars, "reply_share": self.reply_share}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputFormat:
        return cls(int(data["max_length"]), int(data["history_messages"]), int(data["system_chars"]),
                   float(data["reply_share"]))


def render_history(messages: ChatMessages, history_messages: int, system_chars: int) -> str:
    """The history as one text: the (cut) system prompt, then the last non-system messages."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    turns = [m for m in messages if m["role"] != "system"][-history_messages:]
    parts = [f"[system] {system[:system_chars]}"] if system and system_chars else []
    parts += [f"[{m['role']}] {m['content']}" for m in turns]
    return " ".join(parts) if parts else " "


def _cut(tokenizer: PreTrainedTokenizerBase, text: str, budget: int, keep_end: bool) -> tuple[str, int]:
    """``text`` cut to ``budget`` tokens (its start, or its end when ``keep_end``) and its length."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= budget:
        return text, len(offsets)
    if budget <= 0:
        return "", 0
    if keep_end:
        return text[offsets[-budget][0]:], budget
    return text[: offsets[budget - 1][1]], budget


def fit_texts(tokenizer: PreTrainedTokenizerBase, history: str, replies: Sequence[str],
              fmt: InputFormat) -> tuple[str, str]:
    """(text_a, text_b) for one example: replies keep their starts, the history its end."""
    separator = f" {tokenizer.sep_token} " if tokenizer.sep_token else " | "
    specials = tokenizer.num_special_tokens_to_add(pair=True) + (len(replies) - 1)
    room = max(fmt.max_length - specials, 2)
    reply_cap = max(int(room * fmt.reply_share) // len(replies), 1)
    kept_replies, used = [], 0
    for reply in replies:
        text, length = _cut(tokenizer, reply if reply.strip() else " ", reply_cap, keep_end=False)
        kept_replies.append(text)
        used += length
    history_text, _ = _cut(tokenizer, history, max(room - used, 1), keep_end=True)
    return history_text, separator.join(kept_replies)


def encode_batch(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[ChatMessages],
                 reply_groups: Sequence[Sequence[str]], fmt: InputFormat) -> dict[str, Any]:
    """Padded tensors for a batch; ``reply_groups[i]`` is (reply,) or (reply_a, reply_b)."""
    pairs = [fit_texts(tokenizer, render_history(p, fmt.history_messages, fmt.system_chars), replies, fmt)
             for p, replies in zip(prompts, reply_groups, strict=True)]
    return tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first",
                     max_length=fmt.max_length, padding=True, return_tensors="pt")


CONTEXT_SEGMENTS = 3  # persona, earlier turns, last user line


def segment_texts(prompt: ChatMessages, replies: Sequence[str], fmt: InputFormat) -> list[str]:
    """[persona, earlier turns, last user line, *replies]; an empty part is a single space."""
    system = next((m["content"] for m in prompt if m["role"] == "system"), "")
    turns = [m for m in prompt if m["role"] != "system"][-fmt.history_messages:]
    last_user = len(turns) - 1 if turns and turns[-1]["role"] == "user" else None
    earlier = turns if last_user is None else turns[:last_user]
    parts = [system[: fmt.system_chars], " ".join(f"[{m['role']}] {m['content']}" for m in earlier),
             turns[last_user]["content"] if last_user is not None else "", *replies]
    return [part if part.strip() else " " for part in parts]


def encode_segments(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[ChatMessages],
                    reply_groups: Sequence[Sequence[str]], fmt: InputFormat) -> dict[str, Any]:
    """Each distinct segment text tokenised once (replies keep their start, the rest their end), and
    ``segment_index`` (examples x segments) pointing at its row."""
    row_of: dict[tuple[bool, str], int] = {}
    index: list[list[int]] = []
    for prompt, replies in zip(prompts, reply_groups, strict=True):
        texts = segment_texts(prompt, replies, fmt)
        keys = [(position >= CONTEXT_SEGMENTS, text) for position, text in enumerate(texts)]
        index.append([row_of.setdefault(key, len(row_of)) for key in keys])
    rows = list(row_of)
    ids: list[list[int]] = [[] for _ in rows]
    side = tokenizer.truncation_side
    try:
        for is_reply in (True, False):
            chosen = [i for i, (reply, _) in enumerate(rows) if reply == is_reply]
            if chosen:
                tokenizer.truncation_side = "right" if is_reply else "left"
                encoded = tokenizer([rows[i][1] for i in chosen], truncation=True, max_length=fmt.max_length)
                for i, row_ids in zip(chosen, encoded["input_ids"], strict=True):
                    ids[i] = list(row_ids)
    finally:
        tokenizer.truncation_side = side
    width = max(len(row) for row in ids)
    pad = tokenizer.pad_token_id or 0
    return {"input_ids": torch.tensor([row + [pad] * (width - len(row)) for row in ids], dtype=torch.long),
            "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids],
                                           dtype=torch.long),
            "segment_index": torch.tensor(index, dtype=torch.long)}


def check_prompt(prompt: Any, where: str) -> list[dict[str, str]]:
    """A chat history as a list of {"role", "content"} dicts, or a one-line ValueError naming ``where``."""
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"{where}: prompt: expected a non-empty list of messages")
    for index, message in enumerate(prompt):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"{where}: prompt[{index}]: expected {{'role': str, 'content': str}}")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]
