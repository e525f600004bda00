"""Engagement read-out of ingested traffic: the A/B analysis with the characters' rules as guardrail.

Glue between the traffic on disk, the character cards and ``evaluate.ab``; used by the ``ab``
command and by any stage that reads out an experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.characters import Character, load_characters
from characterflywheel.characters.from_system import conversation_card
from characterflywheel.data.jsonl import write_json
from characterflywheel.evaluate.ab import ABResult
from characterflywheel.evaluate.ab_render import plot_ab
from characterflywheel.characters.instructions import check_reply


def violations_for(characters: Mapping[str, Character]) -> Callable[[Mapping[str, Any]], tuple[int, int] | None]:
    """A/B guardrail callback: (failed checks, checks) of a session's replies against its card (a
    user-created character's: the rules its system message states)."""

    def violation_of(record: Mapping[str, Any]) -> tuple[int, int] | None:
        character = conversation_card(record.get("character_id"), record["messages"], characters)
        if character is None or not character.instructions:
            return None
        failed = checks = 0
        last_user = None
        for message in record["messages"]:
            if message["role"] == "user":
                last_user = message["content"]
            elif message["role"] == "assistant":
                for ok in check_reply(message["content"], character.instructions, last_user).values():
                    if ok is not None:
                        checks += 1
                        failed += not ok
        return (failed, checks) if checks else None

    return violation_of


def configured_split(weights: Mapping[str, float], sessions: list[dict[str, Any]]) -> dict[str, float] | None:
    """The serving weights of the traffic's arms, for the SRM test; None (equal shares) when the
    traffic has arms not in ``weights`` (e.g. a team's own experiment read out by ``ab``)."""
    observed = {str(s["arm"]) for s in sessions if s.get("arm")}
    return {arm: weights[arm] for arm in observed} if observed and observed <= set(weights) else None


def analyze_traffic(dataset: Path, out_dir: Path, *, control_arm: str, arm_weights: Mapping[str, float],
                    bootstrap: int, seed: int, pre_period: Path | None = None,
                    characters: Sequence[Character] | None = None) -> ABResult:
    """A/B read-out of ingested traffic into ``out_dir`` (ab.json, ab.png); returns the result.

    ``arm_weights``: the serving weights (the SRM test's expected split); ``pre_period``: an earlier
    window's ingested traffic of the same users (CUPED covariates); ``characters``: the cards (default
    the shipped ones)."""
    from characterflywheel.data import read_conversations
    from characterflywheel.evaluate.ab import analyze_ab

    cards = {c.id: c for c in (load_characters() if characters is None else characters)}
    sessions = [c.to_record() for c in read_conversations(dataset)]
    pre = [c.to_record() for c in read_conversations(pre_period)] if pre_period is not None else None
    result = analyze_ab(sessions, pre_period=pre, control_arm=control_arm, bootstrap=bootstrap,
                        seed=seed, violation_of=violations_for(cards),
                        expected_split=configured_split(arm_weights, sessions))
    write_json(out_dir / artifacts.AB, result.to_dict())
    plot_ab(result, out_dir / artifacts.AB_PLOT)
    return result
