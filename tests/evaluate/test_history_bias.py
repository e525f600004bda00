"""History-bias monitor: a model that mirrors emoji from the history is caught; reintroduction flag."""

from __future__ import annotations

import json

import numpy as np
import pytest

from characterflywheel.evaluate.history_bias import (
    HistoryBiasReport,
    feature_detector,
    history_bias,
    history_has_feature,
    reintroduction_flag,
)
from characterflywheel.evaluate.settings import EvaluateConfig


def _prompts(n: int, emoji_share: float, seed: int) -> tuple[list[dict], list[bool]]:
    """Contract prompt records; about ``emoji_share`` of the histories hold an emoji in an assistant turn."""
    rng = np.random.default_rng(seed)
    records, has = [], []
    for index in range(n):
        emoji = bool(rng.random() < emoji_share)
        earlier = "Ahoy there 🏴‍☠️" if emoji else "Ahoy there."
        records.append({
            "prompt_id": f"p{index}",
            "character_id": "captain",
            "prompt": [
                {"role": "system", "content": "You are a pirate. Use emoji 🙂 freely."},  # system turn ignored
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": earlier},
                {"role": "user", "content": "what's for dinner"},
            ],
        })
        has.append(emoji)
    return records, has


def _mirroring_replies(has_emoji: list[bool], p_present: float, p_absent: float, seed: int) -> list[str]:
    """A constructed policy: emoji in its reply with probability p_present / p_absent; asks back half the time
    regardless of the history (an irrelevant feature)."""
    rng = np.random.default_rng(seed)
    replies = []
    for present in has_emoji:
        text = "Fish stew, as always"
        if rng.random() < (p_present if present else p_absent):
            text += " 🐟"
        text += "?" if rng.random() < 0.5 else "."
        replies.append(text)
    return replies


def test_detectors_and_history_roles() -> None:
    emoji = feature_detector("emoji")
    assert emoji("yo 🙂") and not emoji("yo :)")
    assert feature_detector("phrase:I feel like")("Honestly I feel like sailing")
    messages = [{"role": "system", "content": "🙂"}, {"role": "user", "content": "hey"}]
    assert not history_has_feature(messages, emoji)
    assert history_has_feature(messages, emoji, roles=("system",))
    with pytest.raises(ValueError, match="features: unknown feature 'sparkle'"):
        feature_detector("sparkle")


def test_a_model_that_mirrors_emoji_is_detected() -> None:
    prompts, has = _prompts(300, emoji_share=0.5, seed=0)
    replies = _mirroring_replies(has, p_present=0.8, p_absent=0.1, seed=1)
    report = history_bias(prompts, replies, features=("emoji", "question"))
    emoji = report.features["emoji"]
    assert emoji.n_present + emoji.n_absent == 300
    assert emoji.n_present == sum(has)
    assert emoji.rate_present.lo <= 0.8 <= emoji.rate_present.hi
    assert emoji.rate_absent.lo <= 0.1 <= emoji.rate_absent.hi
    assert emoji.difference.lo <= 0.7 <= emoji.difference.hi
    assert emoji.mirrors
    question = report.features["question"]
    assert (question.n_present, question.n_absent) == (0, 300)  # no history asks a question
    assert question.difference.to_dict()["value"] is None and not question.mirrors
    assert report.mirrored == ["emoji"]


def test_a_model_that_ignores_the_history_is_not_flagged() -> None:
    prompts, has = _prompts(300, emoji_share=0.5, seed=2)
    replies = _mirroring_replies(has, p_present=0.3, p_absent=0.3, seed=3)
    report = history_bias(prompts, replies, features=("emoji",))
    assert not report.features["emoji"].mirrors
    assert report.features["emoji"].difference.lo < 0 < report.features["emoji"].difference.hi


def test_several_replies_per_prompt_and_message_lists() -> None:
    prompts, has = _prompts(20, 0.5, seed=4)
    grouped = [["🙂 yes", "no"] for _ in prompts]
    report = history_bias([record["prompt"] for record in prompts], grouped, features=["emoji"])
    assert report.n == 40
    assert report.features["emoji"].output_rate.value == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"replies: 3 entries for 20 prompts"):
        history_bias(prompts, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"prompts\[0\]: prompt: must be a list of messages"):
        history_bias([{"prompt": "hello"}], ["a"])


def test_reintroduction_is_flagged_only_when_the_reward_no_longer_sees_the_feature() -> None:
    prompts, has = _prompts(300, 0.5, seed=5)
    parent = history_bias(prompts, _mirroring_replies(has, 0.3, 0.1, seed=6))  # ~0.2 emoji (the paper's parent)
    child = history_bias(prompts, _mirroring_replies(has, 0.8, 0.2, seed=7))  # ~0.5 emoji (the paper's child)
    stripped = reintroduction_flag(parent, child, reward_sees_feature=False)
    assert stripped.flagged == ["emoji"]
    assert "stripped" in stripped.checks["emoji"].reason
    assert stripped.checks["emoji"].change.lo > 0
    seen = reintroduction_flag(parent, child, reward_sees_feature=True)
    assert seen.flagged == [] and seen.checks["emoji"].rose
    # from settings, and from the JSON form of the reports
    settings = EvaluateConfig(reward_stripped_features=["emoji"])
    from_json = reintroduction_flag(json.loads(json.dumps(parent.to_dict())), json.loads(json.dumps(child.to_dict())),
                                    settings=settings)
    assert from_json.flagged == ["emoji"]
    assert HistoryBiasReport.from_dict(child.to_dict()).features["emoji"] == child.features["emoji"]
    # no rise: no flag, even when stripped
    steady = reintroduction_flag(parent, parent, reward_sees_feature=False)
    assert steady.flagged == [] and not steady.checks["emoji"].rose
    with pytest.raises(ValueError, match="child_report: not a history-bias report"):
        reintroduction_flag(parent, {"n": 3})
