"""Online DPO recipe: each step samples two replies per prompt from the current policy, lets the
reward judge pick the better one, and takes a DPO step on that fresh pair.

Reads top to bottom: check the reward, load the parent, read the prompts, configure TRL's
OnlineDPOTrainer (``trl.experimental.online_dpo`` in TRL 1.16), train (resuming from the newest
checkpoint in ``work_dir``), save the child.

Rewards: TRL 1.16's OnlineDPOTrainer takes ``reward_funcs`` (its ``judge`` argument was removed), so
the judge enters as the same ``reward_fn(prompts, completions) -> list[float]`` GRPO uses: the lead's
RewardJudge ``as_reward_fn()``; the higher-scored reply of each pair is "chosen". The user-signal
model is refused (:func:`check_reward_fn`). Rollouts: as in GRPO, ``rollout_backend`` picks
transformers ``generate`` or a ``trl vllm-serve`` server.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from datasets import Dataset

from characterflywheel.models.progress import quiet_trainer
from characterflywheel.train.common import (
    RewardFn,
    SkipFinalCheckpoint,
    StepClock,
    common_arguments,
    load_parent,
    lora_config,
    rollout_arguments,
    train_and_save,
    trl_reward_func,
)
from characterflywheel.train.preprocess import prepare_rows, read_prompt_rows
from characterflywheel.train.settings import TrainConfig

with warnings.catch_warnings():  # TRL warns on import that the experimental API may change
    warnings.simplefilter("ignore")
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer


def run_online_dpo(
    parent: str | Path,
    prompts_path: Path,
    reward_fn: RewardFn,
    out_dir: Path,
    settings: TrainConfig,
    work_dir: Path,
    progress: bool = False,
) -> dict[str, float]:
    """Online DPO on the prompts at ``prompts_path`` judged by ``reward_fn``; child to ``out_dir``.

    Returns metrics: ``loss_start``/``loss_end``, ``reward_start``/``reward_end`` (mean judge score of
    the sampled replies), ``steps``, ``steps_run``, ``resumed_from_step``, ``examples``.
    """
    # 1. reward (refuses the user-signal model) and parent
    reward = trl_reward_func(reward_fn)
    model, tokenizer, parent_folder = load_parent(parent)

    # 2. prompts, leaving room for the sampled reply inside online_dpo_max_length
    prompt_budget = max(16, settings.online_dpo_max_length - settings.online_dpo_max_new_tokens)
    rows = read_prompt_rows(Path(prompts_path))
    rows, dropped = prepare_rows(rows, tokenizer, prompt_budget, settings.strip_history_features)
    if not rows:
        raise ValueError(f"{prompts_path}: no prompt fits online_dpo_max_length={settings.online_dpo_max_length}")
    dataset = Dataset.from_list(rows)

    # 3. trainer
    config = OnlineDPOConfig(
        **common_arguments(
            settings,
            Path(work_dir),
            learning_rate=settings.online_dpo_learning_rate,
            epochs=settings.online_dpo_epochs,
            max_steps=settings.online_dpo_max_steps,
            batch_size=settings.online_dpo_batch_size,
            grad_accum=settings.online_dpo_grad_accum,
            progress=progress,
        ),
        beta=settings.online_dpo_beta,
        max_new_tokens=settings.online_dpo_max_new_tokens,
        max_length=settings.online_dpo_max_length,
        temperature=settings.online_dpo_temperature,
        **rollout_arguments(settings),
    )
    clock = StepClock()
    trainer = OnlineDPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=[clock, SkipFinalCheckpoint()],
    )
    quiet_trainer(trainer)

    # 4. train (resuming an interrupted run), save the child, report
    return train_and_save(trainer, clock, tokenizer, parent_folder, Path(out_dir), Path(work_dir), settings,
                          dropped, len(rows), reward_key="objective/scores")
