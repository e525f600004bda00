"""GRPO and Online DPO on the real embedded SmolLM2 at tiny scale, with a verifiable reward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import PAIRS, SYSTEM

from characterflywheel.characters.instructions import word_count
from characterflywheel.models import EMBEDDED_POLICY, load_policy
from characterflywheel.train.settings import TrainConfig

pytestmark = pytest.mark.slow

PROMPTS = [[SYSTEM, {"role": "user", "content": user}] for user, _c, _r in PAIRS]


def brevity_reward(prompts: list[list[dict]], completions: list[str]) -> list[float]:
    """Verifiable reward: fewer words is better."""
    assert all(isinstance(prompt, list) and prompt[-1]["role"] == "user" for prompt in prompts)
    return [-float(word_count(text)) for text in completions]


@torch.no_grad()
def greedy_replies(folder: str, max_new_tokens: int = 24) -> list[str]:
    model, tokenizer = load_policy(folder)
    batch = tokenizer.apply_chat_template(
        PROMPTS, add_generation_prompt=True, return_tensors="pt", padding=True, return_dict=True
    )
    output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_grpo_raises_mean_reward_on_its_prompts(prompts_path: Path, tmp_path: Path) -> None:
    from characterflywheel.train.grpo import run_grpo

    settings = TrainConfig(
        grpo_max_steps=4, grpo_prompts_per_step=2, grpo_num_generations=4, grpo_max_completion_length=24,
        grpo_learning_rate=3e-5, grpo_max_prompt_tokens=112, save_steps=50,
    )
    metrics = run_grpo(EMBEDDED_POLICY, prompts_path, brevity_reward, tmp_path / "child", settings, tmp_path / "work")

    assert metrics["steps"] == 4 and "reward_start" in metrics
    before = brevity_reward(PROMPTS, greedy_replies(EMBEDDED_POLICY, 24))
    after = brevity_reward(PROMPTS, greedy_replies(str(tmp_path / "child"), 24))
    assert sum(after) / len(after) > sum(before) / len(before) + 1.0, (before, after)


def test_online_dpo_runs_real_steps_and_saves_a_loadable_child(prompts_path: Path, tmp_path: Path) -> None:
    from characterflywheel.train.online_dpo import run_online_dpo

    settings = TrainConfig(
        online_dpo_max_steps=2, online_dpo_batch_size=2, online_dpo_max_new_tokens=12, online_dpo_max_length=128,
        online_dpo_learning_rate=1e-5, save_steps=50,
    )
    metrics = run_online_dpo(
        EMBEDDED_POLICY, prompts_path, brevity_reward, tmp_path / "child", settings, tmp_path / "work"
    )
    assert metrics["steps"] == 2 and metrics["steps_run"] == 2
    assert "loss_end" in metrics and "reward_end" in metrics
    child_model, _ = load_policy(str(tmp_path / "child"))
    parent_model, _ = load_policy(EMBEDDED_POLICY)
    moved = max(
        float((child.detach() - parent.detach()).abs().max())
        for child, parent in zip(child_model.parameters(), parent_model.parameters(), strict=True)
    )
    assert moved > 0
    assert all(isinstance(reply, str) for reply in greedy_replies(str(tmp_path / "child"), max_new_tokens=8))
