"""The user-signal model's habits layer learns, from what users did, which reply habits keep them."""

from __future__ import annotations

import numpy as np

from characterflywheel.reward.habits import HABITS, HabitModel, habit_features


def test_habit_features_read_a_reply():
    features = dict(zip(HABITS, habit_features("Nice! Do you like jazz? 😊")))
    assert features["asks_back"] == 1 and features["ends_with_question"] == 0
    assert features["emoji"] == 1 and features["exclamations"] == 1 and features["unfinished"] == 0
    assert dict(zip(HABITS, habit_features("I think that the")))["unfinished"] == 1


def test_users_who_stay_when_asked_back_teach_the_model_to_rank_questions_first(tmp_path):
    rng = np.random.default_rng(0)
    replies, stayed = [], []
    for _ in range(200):
        asks = rng.random() < 0.3
        replies.append("That sounds lovely. What did you cook?" if asks else "That sounds lovely.")
        stayed.append(rng.random() < (0.7 if asks else 0.4))
    model = HabitModel.fit(replies, np.array(stayed))
    model.save(tmp_path)
    loaded = HabitModel.load(tmp_path)
    p_ask, p_plain = loaded.predict(["Cool. Where was that?", "Cool."])
    assert p_ask > p_plain
    assert HabitModel.fit(["a", "b"], np.array([True, True])) is None  # one class: nothing to fit


def _window(conversations: int, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Three turns a conversation; users stay a little more often when asked back."""
    rng = np.random.default_rng(seed)
    replies, stayed, groups = [], [], []
    for conversation in range(conversations):
        for _ in range(3):
            asks = rng.random() < 0.4
            replies.append("I went to the market today. Have you been?" if asks else "I went to the market today.")
            stayed.append(rng.random() < (0.6 if asks else 0.5))
            groups.append(f"c{conversation}")
    return replies, np.array(stayed), groups


def test_bootstrap_refits_measure_how_uncertain_a_window_leaves_the_habits(tmp_path):
    """The refits resample whole conversations; their spread is the model's own error, which a small
    window leaves large and a ten times larger one shrinks (about sqrt(10))."""
    small = HabitModel.fit(*_window(60, seed=1)[:2], groups=_window(60, seed=1)[2])
    large = HabitModel.fit(*_window(600, seed=1)[:2], groups=_window(600, seed=1)[2])
    replies = ["Nice. Where did you go?", "Nice."]
    small_draws, large_draws = small.predict_draws(replies), large.predict_draws(replies)
    assert small_draws.shape == (200, 2)
    small_spread = (small_draws[:, 0] - small_draws[:, 1]).std()
    large_spread = (large_draws[:, 0] - large_draws[:, 1]).std()
    assert 2.0 < small_spread / large_spread < 5.0

    small.save(tmp_path)
    loaded = HabitModel.load(tmp_path)
    assert np.allclose(loaded.predict_draws(replies), small_draws)
    assert HabitModel.fit(*_window(60, seed=1)[:2]).predict_draws(replies) is None  # no groups: no refits
