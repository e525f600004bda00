"""History preprocessing, data validation and the reward guard (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SYSTEM, write_jsonl

from characterflywheel.characters.instructions import count_emoji
from characterflywheel.models import resolve_model
from characterflywheel.train.common import check_reward_fn, trl_reward_func
from characterflywheel.train.preprocess import (
    TrainDataError,
    fit_history,
    prepare_rows,
    read_preference_records,
    read_sft_records,
    strip_emoji,
    strip_history,
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model("embedded:smollm2-135m-instruct"), local_files_only=True)


def test_strip_emoji_removes_every_emoji_and_keeps_typography() -> None:
    text = "so fun 😂😂 see you 👨‍👩‍👧 tmrw 🇫🇷 ❤️ !! © 2024 :)"
    stripped = strip_emoji(text)
    assert count_emoji(text) == 5
    assert count_emoji(stripped) == 0
    assert stripped == "so fun see you tmrw !! © 2024 :)"
    assert strip_emoji("🎉 yay\n😊 ok 👍") == "yay\nok"


def test_strip_history_features_touches_history_not_targets(tmp_path: Path, tokenizer) -> None:
    history = [SYSTEM, {"role": "user", "content": "hiii 😊"}, {"role": "assistant", "content": "hey you 🌟 what's up?"},
               {"role": "user", "content": "bored 🙃"}]
    target = [{"role": "assistant", "content": "Let's fix that 🎉"}]
    rows, dropped = prepare_rows([{"prompt": history, "completion": target}], tokenizer, 256, ["emoji"], ("completion",))
    assert dropped == 0
    assert [count_emoji(message["content"]) for message in rows[0]["prompt"]] == [0, 0, 0, 0]
    assert rows[0]["prompt"][2]["content"] == "hey you what's up?"
    assert rows[0]["completion"] == target  # the target keeps its emoji
    assert history[1]["content"] == "hiii 😊"  # inputs are not mutated
    with pytest.raises(ValueError, match="unknown feature"):
        strip_history(history, ["lists"])


def test_fit_history_drops_oldest_turns_and_keeps_system_and_last_user(tokenizer) -> None:
    long_turn = "word " * 60
    prompt = [SYSTEM]
    for index in range(4):
        prompt += [{"role": "user", "content": f"{index} {long_turn}"}, {"role": "assistant", "content": long_turn}]
    prompt += [{"role": "user", "content": "last question?"}]
    reply = [{"role": "assistant", "content": "short answer"}]
    fitted = fit_history(prompt, [reply], tokenizer, max_length=200)
    assert fitted is not None
    assert fitted[0] == SYSTEM and fitted[-1]["content"] == "last question?"
    assert fitted[1]["role"] == "user" and len(fitted) < len(prompt)
    ids = tokenizer.apply_chat_template([*fitted, *reply], tokenize=True, return_dict=False)
    assert len(ids) <= 200
    assert fit_history(prompt, [[{"role": "assistant", "content": long_turn * 5}]], tokenizer, max_length=200) is None


def test_bad_records_name_file_record_and_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "sft.jsonl", [
        {"messages": [SYSTEM, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]},
        {"messages": [SYSTEM, {"role": "user", "content": 3}]},
    ])
    with pytest.raises(TrainDataError, match=r"sft\.jsonl:2: messages\[1\]\.content: Input should be a valid string"):
        read_sft_records(path)
    path = write_jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
         "rejected": [{"role": "user", "content": "b"}]},
    ])
    with pytest.raises(TrainDataError, match=r"prefs\.jsonl:1: rejected: must be exactly one assistant message"):
        read_preference_records(path)


def test_an_sft_record_weight_repeats_it_and_a_bad_weight_is_named(tmp_path: Path) -> None:
    reply = {"role": "assistant", "content": "Ahoy! 😊 How are ye?"}
    path = write_jsonl(tmp_path / "sft.jsonl", [
        {"messages": [SYSTEM, {"role": "user", "content": "hi"}, reply], "weight": 3},
        {"messages": [SYSTEM, {"role": "user", "content": "yo"}, {"role": "assistant", "content": "hey"}]},
    ])
    rows = read_sft_records(path)
    assert [row["completion"][0]["content"] for row in rows] == [reply["content"]] * 3 + ["hey"]
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"messages": [SYSTEM, {"role": "user", "content": "hi"}, reply], "weight": 0.5},
    ])
    with pytest.raises(TrainDataError, match=r"bad\.jsonl:1: weight: Input should be a valid integer"):
        read_sft_records(path)


class UserSignalModel:
    def predict(self, prompts, replies):
        return [[0.5, 0.5] for _ in replies]

    def reward(self, prompts, replies):
        return [0.5 for _ in replies]


def test_user_signal_model_is_never_an_rl_reward() -> None:
    with pytest.raises(ValueError, match="never an RL reward"):
        check_reward_fn(UserSignalModel().reward)

    def engagement(prompts, completions):
        return [0.0] * len(completions)

    engagement.reward_source = "user_signal"
    with pytest.raises(ValueError, match="never an RL reward"):
        trl_reward_func(engagement)


def test_reward_adapter_speaks_trl_conversational_format() -> None:
    seen = {}

    def judge(prompts, completions):
        seen["prompts"], seen["completions"] = prompts, completions
        return [float(len(text)) for text in completions]

    reward = trl_reward_func(judge)
    prompts = [[{"role": "user", "content": "hi"}]] * 2
    completions = [[{"role": "assistant", "content": "hey"}], [{"role": "assistant", "content": "hello"}]]
    assert reward(prompts=prompts, completions=completions, completion_ids=[[1], [2]], trainer_state=None) == [3.0, 5.0]
    assert seen["completions"] == ["hey", "hello"] and seen["prompts"] == prompts
    assert reward.__name__ == "judge"
