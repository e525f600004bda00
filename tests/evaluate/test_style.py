"""Style-artifact monitor: features on handmade replies, flags on constructed rewards, parent movement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from characterflywheel.evaluate.settings import EvaluateConfig
from characterflywheel.evaluate.stats import (
    MAX_Z,
    Estimate,
    bootstrap_mean,
    bootstrap_mean_difference,
    clustered_rate,
    newcombe_difference,
    paired_rate_difference,
    paired_z,
    wilson,
)
from characterflywheel.evaluate.style import style_feature_names, style_features, style_monitor


def test_features_of_handmade_replies() -> None:
    reply = "Great question! I feel like you're amazing 😀👍\n- first\n- second\nWhat do you think?"
    features = style_features(reply)
    assert features["length_words"] == 13  # great question i feel like you're amazing first second what do you think
    assert features["has_list"] == 1.0
    assert features["emoji_count"] == 2.0
    assert features["ends_with_question"] == 1.0
    assert features["has_question"] == 1.0
    assert features["exclamation_count"] == 1.0
    assert features["flattery_count"] == 1.0  # "amazing"
    assert features["phrase:i feel like"] == 1.0
    assert features["phrase:great question"] == 1.0
    assert features["phrase:as an ai"] == 0.0
    assert list(features) == style_feature_names()


def test_plain_reply_has_no_style_markers() -> None:
    features = style_features("The tide turns at noon. We sail then.")
    assert features["length_words"] == 8
    assert {k: v for k, v in features.items() if k != "length_words"} == dict.fromkeys(
        [name for name in style_feature_names() if name != "length_words"], 0.0
    )
    # a question mark mid-reply counts for has_question only; "*grins*" is not a list bullet
    mid = style_features("Why? Because. *grins*")
    assert (mid["has_question"], mid["ends_with_question"], mid["has_list"]) == (1.0, 0.0, 0.0)


def test_watched_phrases_come_from_settings() -> None:
    settings = EvaluateConfig(style_watched_phrases=["to be honest"], style_flattery_words=["genius", "stellar"])
    features = style_features("To be honest, you're a genius. Stellar work!", settings)
    assert features["phrase:to be honest"] == 1.0
    assert features["flattery_count"] == 2.0
    assert "phrase:i feel like" not in features


def _constructed(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Replies with random emoji count, length and question; reward = emoji count + noise."""
    rng = np.random.default_rng(seed)
    replies, rewards = [], []
    for _ in range(n):
        emoji = int(rng.integers(0, 4))
        words = " ".join(["sure"] * int(rng.integers(2, 12)))
        question = "?" if rng.random() < 0.5 else "."
        replies.append(f"{words}{question} " + "🙂" * emoji)
        rewards.append(emoji + rng.normal(0, 0.5))
    return replies, np.array(rewards)


def test_feature_that_drives_the_reward_is_flagged_and_irrelevant_ones_are_not() -> None:
    replies, rewards = _constructed(80, seed=1)
    report = style_monitor(replies, rewards, settings=EvaluateConfig(bootstrap=200))
    assert report.flagged == ["emoji_count"]
    emoji = report.features["emoji_count"]
    assert emoji.r2 > 0.6 and emoji.partial_r2 > 0.6
    assert emoji.high_reward_mean > emoji.low_reward_mean
    assert emoji.high_minus_low.lo > 0
    for irrelevant in ("length_words", "ends_with_question"):
        stats = report.features[irrelevant]
        assert not stats.flagged
        assert stats.r2 < 0.2
    assert report.joint_r2 >= emoji.r2 - 1e-9


def test_partial_share_setting_and_threshold() -> None:
    replies, rewards = _constructed(80, seed=2)
    strict = style_monitor(replies, rewards, settings=EvaluateConfig(style_share="partial", bootstrap=200))
    assert strict.share_kind == "partial" and strict.flagged == ["emoji_count"]
    lenient = style_monitor(replies, rewards, settings=EvaluateConfig(style_variance_threshold=0.99, bootstrap=200))
    assert lenient.flagged == []


def test_too_few_replies_flag_nothing() -> None:
    replies, rewards = _constructed(5, seed=3)
    report = style_monitor(replies, rewards, settings=EvaluateConfig(style_min_replies=8, bootstrap=200))
    assert report.flagged == []


def test_parent_to_child_movement_per_feature() -> None:
    parent = [f"Okay, reply number {i}." for i in range(30)]
    child = [f"Okay, reply number {i}! 🎉 What about you?" for i in range(30)]
    report = style_monitor(child, np.arange(30.0), parent_replies=parent, settings=EvaluateConfig(bootstrap=200))
    emoji = report.features["emoji_count"]
    assert emoji.parent_mean.value == 0.0 and emoji.mean.value == 1.0
    assert emoji.child_minus_parent.value == 1.0 and emoji.moved
    assert report.features["ends_with_question"].moved
    assert report.features["has_list"].moved is False
    assert report.features["length_words"].child_minus_parent.value == pytest.approx(3.0)
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["n"] == 30 and payload["n_parent"] == 30
    assert payload["features"]["emoji_count"]["moved"] is True


def test_a_child_is_flagged_only_for_moving_the_way_the_reward_leans() -> None:
    """The reward pays for emoji in both cases; the child that added emoji is flagged, the child that
    dropped them is not (the lean is the reward models' taste, not the child's hack)."""
    replies, rewards = _constructed(80, seed=1)
    settings = EvaluateConfig(bootstrap=200)
    fewer_emoji = [reply.rstrip("🙂 ") + "." for reply in replies]  # the parent had none: the child added them
    assert style_monitor(replies, rewards, parent_replies=fewer_emoji, settings=settings).flagged == ["emoji_count"]
    more_emoji = [reply + "🙂" * 3 for reply in replies]  # the parent had more: the child moved against the lean
    against = style_monitor(replies, rewards, parent_replies=more_emoji, settings=settings)
    assert against.features["emoji_count"].share > 0.6 and against.flagged == []


def test_bad_rewards_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"rewards: 2 values for 3 replies"):
        style_monitor(["a", "b", "c"], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"rewards\[1\]: not a finite number"):
        style_monitor(["a", "b"], [1.0, float("nan")])


def test_interval_helpers_cover_the_truth() -> None:
    rng = np.random.default_rng(0)
    covered_mean = covered_diff = 0
    for trial in range(60):
        a, b = rng.normal(1.0, 1.0, 40), rng.normal(0.5, 1.0, 50)
        covered_mean += bootstrap_mean(a, 0.9, 300, trial).lo <= 1.0 <= bootstrap_mean(a, 0.9, 300, trial).hi
        diff = bootstrap_mean_difference(a, b, 0.9, 300, trial)
        covered_diff += diff.lo <= 0.5 <= diff.hi
    assert covered_mean >= 46 and covered_diff >= 46  # nominal 54 of 60
    assert wilson(0, 10).lo == pytest.approx(0.0, abs=1e-12) and wilson(0, 10).hi > 0.2
    difference = newcombe_difference(30, 40, 10, 40)
    assert difference.value == pytest.approx(0.5) and 0.25 < difference.lo < 0.5 < difference.hi < 0.7
    assert Estimate.from_dict(bootstrap_mean([1.0]).to_dict()).n == 1
    assert bootstrap_mean([]).to_dict() == {"value": None, "lo": None, "hi": None, "n": 0}


def test_clustered_rates_cover_the_truth_where_replies_to_a_prompt_agree() -> None:
    """Four replies to each of 32 prompts whose success probability varies by prompt (each prompt's
    rate drawn from Beta(0.3, 0.3): its replies agree far more than independent trials would): the
    clustered intervals hold their level, Wilson's treats 128 replies as independent and does not;
    pairing by prompt removes the prompts' spread from a difference."""
    rng = np.random.default_rng(1)
    covered = {"clustered": 0, "wilson": 0, "difference": 0}
    paired_width = unpaired_width = 0.0
    trials = 120
    for trial in range(trials):
        rate = rng.beta(0.3, 0.3, 32)
        a = rng.binomial(4, rate)
        b = rng.binomial(4, 0.8 * rate)
        four = np.full(32, 4)
        clustered = clustered_rate(a, four, 0.9, 400, trial)
        covered["clustered"] += clustered.lo <= 0.5 <= clustered.hi
        interval = wilson(int(a.sum()), 128, 0.9)
        covered["wilson"] += interval.lo <= 0.5 <= interval.hi
        difference = paired_rate_difference(a, four, b, four, 0.9, 400, trial)
        covered["difference"] += difference.lo <= 0.1 <= difference.hi
        paired_width += difference.hi - difference.lo
        unpaired_width += (clustered.hi - clustered.lo) * np.sqrt(2)
    assert covered["clustered"] >= 0.8 * trials and covered["difference"] >= 0.8 * trials  # nominal 0.9
    assert covered["wilson"] < 0.75 * trials
    assert paired_width < 0.8 * unpaired_width
    empty = paired_rate_difference([1, 0], [2, 0], [0, 0], [1, 0])
    assert empty.value == pytest.approx(0.5) and empty.n == 3  # resamples of the empty prompt only are dropped
    assert clustered_rate([0, 0], [0, 0]).to_dict()["value"] is None
    none_kept = clustered_rate([0, 0, 0], [4, 4, 4])  # resampling cannot move it: Wilson on 3 prompts
    assert none_kept.value == 0.0 and none_kept.hi == pytest.approx(wilson(0, 3).hi)
    with pytest.raises(ValueError, match="one entry per cluster"):
        paired_rate_difference([1], [2, 2], [1], [2])


def test_paired_z_is_the_mean_over_its_standard_error() -> None:
    values = np.array([0.1, 0.3, -0.1, 0.2, 0.0])
    assert paired_z(values) == pytest.approx(values.mean() / (values.std(ddof=1) / np.sqrt(5)))
    assert paired_z([0.5]) is None and paired_z([0.0, 0.0]) == 0.0
    assert paired_z([0.2, 0.2, 0.2]) == MAX_Z and paired_z([-0.2, -0.2]) == -MAX_Z
    assert paired_z([0.1, float("nan"), 0.3]) == pytest.approx(2.0)
