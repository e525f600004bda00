"""Shared fixtures for the herding tests: tiny real data sets on disk and log-likelihood helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SYSTEM = {"role": "system", "content": "You are Robin, a warm and curious friend."}

CHATS = [
    ("hey! how was your weekend?", "It was lovely, I went hiking by the lake. How about yours?"),
    ("i just got back from a run and i'm exhausted lol", "Nice work! Drink some water and stretch, you earned a rest."),
    ("what kind of music are you into these days?", "Mostly old jazz records, they make rainy evenings cozy."),
    ("my cat knocked my coffee off the table again", "Oh no, cats love gravity experiments! Was the mug okay?"),
]
PAIRS = [
    ("hey! how was your weekend?", "It was lovely, I went hiking by the lake!", "Weekend. Bad. Whatever."),
    ("what kind of music are you into these days?", "Mostly old jazz records, they feel cozy.", "Music is sound. Whatever."),
    ("any tips for sleeping better?", "Keep a steady bedtime and dim the lights early.", "Sleep. Whatever."),
    ("my cat knocked my coffee off the table again", "Oh no! Cats love gravity experiments.", "Cat. Whatever."),
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.fixture
def sft_path(tmp_path: Path) -> Path:
    records = [
        {"messages": [SYSTEM, {"role": "user", "content": u}, {"role": "assistant", "content": a}],
         "prompt_id": str(i), "score": 1.0}
        for i, (u, a) in enumerate(CHATS)
    ]
    return write_jsonl(tmp_path / "sft.jsonl", records)


@pytest.fixture
def prefs_path(tmp_path: Path) -> Path:
    records = [
        {"prompt": [SYSTEM, {"role": "user", "content": u}], "chosen": [{"role": "assistant", "content": c}],
         "rejected": [{"role": "assistant", "content": r}], "prompt_id": str(i), "score_chosen": 1.0,
         "score_rejected": 0.0}
        for i, (u, c, r) in enumerate(PAIRS)
    ]
    return write_jsonl(tmp_path / "prefs.jsonl", records)


@pytest.fixture
def prompts_path(tmp_path: Path) -> Path:
    records = [
        {"prompt_id": str(i), "conversation_id": f"c{i}", "user_id": "u1", "character_id": "robin",
         "model_version": "v0", "arm": "control", "depth": 1, "prompt": [SYSTEM, {"role": "user", "content": u}],
         "reply": c, "continued": True, "thumbs": None}
        for i, (u, c, _r) in enumerate(PAIRS)
    ]
    return write_jsonl(tmp_path / "prompts.jsonl", records)


@torch.no_grad()
def reply_logprob(model, tokenizer, prompt: list[dict], reply: str) -> float:
    """Sum of the reply tokens' log-probabilities given the chat prompt."""
    prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False)
    full_ids = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": reply}], tokenize=True, return_dict=False
    )
    assert full_ids[: len(prompt_ids)] == prompt_ids
    ids = torch.tensor([full_ids])
    logits = model(ids).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logprobs[len(prompt_ids) - 1 :].sum())
