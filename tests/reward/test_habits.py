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
