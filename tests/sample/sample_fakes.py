"""Precise stand-ins for the sampling tests: a backend whose replies carry their own judge score
and P(continue) ("text|s=0.7|c=0.2"), a judge and a user-signal model that read them back, and
contract prompt records."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from characterflywheel.models import SamplingParams


def reply(text: str, score: float, p_continue: float = 0.5) -> str:
    return f"{text}|s={score}|c={p_continue}"


def parse(reply_text: str, key: str) -> float:
    for part in reply_text.split("|")[1:]:
        name, value = part.split("=")
        if name == key:
            return float(value)
    raise ValueError(f"no {key} in {reply_text!r}")


def last_user_line(prompt: Sequence[dict]) -> str:
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")  # past a forced opening


class ScriptedBackend:
    """Replies looked up by the last user line: ``script[line]`` is a list of replies cycled to
    give ``params.n``. Records every call."""

    def __init__(self, name: str, script: Callable[[str], list[str]]) -> None:
        self.name = name
        self.script = script
        self.calls: list[tuple[int, int]] = []  # (conversations, n)

    def chat(self, conversations, params: SamplingParams, progress: bool = False) -> list[list[str]]:
        self.calls.append((len(conversations), params.n))
        out = []
        for conversation in conversations:
            options = self.script(last_user_line(conversation))
            out.append([options[i % len(options)] for i in range(params.n)])
        return out


class EmbeddedScoreJudge:
    """Judge score = the ``s=`` number inside the reply."""

    def __init__(self) -> None:
        self.scored: list[str] = []

    def score_groups(self, prompts, groups) -> list[np.ndarray]:
        self.scored.extend(r for group in groups for r in group)
        return [np.array([parse(r, "s") for r in group]) for group in groups]

    def win_rate(self, prompts, replies_a, replies_b) -> np.ndarray:
        a = np.array([parse(r, "s") for r in replies_a])
        b = np.array([parse(r, "s") for r in replies_b])
        return 1 / (1 + np.exp(-(a - b) * 10))


class EmbeddedSignal:
    """P(continue) = the ``c=`` number inside the reply; records what it was asked about."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict(self, prompts, replies) -> np.ndarray:
        assert len(prompts) == len(replies)
        self.seen.extend(replies)
        p = np.array([parse(r, "c") for r in replies])
        return np.stack([p, np.full_like(p, 0.5)], axis=1)


def prompt_record(prompt_id: str, user_line: str, system: str | None = "You are Robin, a warm friend.") -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_line}]
    return {
        "prompt_id": prompt_id, "conversation_id": f"c-{prompt_id}", "user_id": "u1", "character_id": "robin",
        "model_version": "gen-0", "arm": "control", "depth": 1, "prompt": messages, "reply": "logged reply",
        "continued": True, "thumbs": None,
    }
