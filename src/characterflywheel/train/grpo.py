"""GRPO recipe: online RL of the parent against the reward judge on curated prompts.

Reads top to bottom: check the reward, load the parent, read the prompts, configure TRL's
GRPOTrainer, train (resuming from the newest checkpoint in ``work_dir``), save the child.

Rewards: ``reward_fn(prompts, completions) -> list[float]`` is the lead's RewardJudge
``as_reward_fn()`` (pointwise reward model, mixed with the pairwise model as configured). The
user-signal (engagement) model is never an RL reward; :func:`check_reward_fn` refuses it. The
callable is adapted to TRL's ``reward_funcs`` signature (conversational prompts, completions as
``[{"role": "assistant", ...}]``).

Rollouts: ``rollout_backend = "hf"`` samples with transformers ``generate`` inside the trainer (the
CPU path). ``"vllm_server"`` sets ``use_vllm=True, vllm_mode="server"`` with
``vllm_server_base_url``: a server started with ``trl vllm-serve --model <parent>`` on other GPUs,
which TRL keeps in sync with the trained weights after each step. A plain OpenAI-compatible vLLM
server (our ``openai`` generation backend) cannot be used for on-policy rollouts because its
weights would not follow the policy.

Each step takes ``grpo_prompts_per_step`` prompts and samples ``grpo_num_generations`` replies for
each; advantages are rewards normalised within a prompt's group.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

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


def run_grpo(
    parent: str | Path,
    prompts_path: Path,
    reward_fn: RewardFn,
    out_dir: Path,
    settings: TrainConfig,
    work_dir: Path,
    progress: bool = False,
) -> dict[str, float]:
    """GRPO on the prompts at ``prompts_path`` scored by ``reward_fn``; the child goes to ``out_dir``.

    Returns metrics: ``reward_start``/``reward_end`` (mean reward of the step's rollouts),
    ``loss_start``/``loss_end``, ``steps``, ``steps_run``, ``resumed_from_step``,
    ``tokens_per_second`` (prompt + completion tokens), ``examples``.
    """
    # 1. reward (refuses the user-signal model) and parent
    reward = trl_reward_func(reward_fn)
    model, tokenizer, parent_folder = load_parent(parent)

    # 2. prompts (history stripped of configured features, fitted to grpo_max_prompt_tokens)
    rows = read_prompt_rows(Path(prompts_path))
    rows, dropped = prepare_rows(rows, tokenizer, settings.grpo_max_prompt_tokens, settings.strip_history_features)
    if not rows:
        raise ValueError(f"{prompts_path}: no prompt fits grpo_max_prompt_tokens={settings.grpo_max_prompt_tokens}")
    dataset = Dataset.from_list(rows)

    # 3. trainer: a device batch holds whole groups (prompts_per_step x num_generations completions)
    config = GRPOConfig(
        **common_arguments(
            settings,
            Path(work_dir),
            learning_rate=settings.grpo_learning_rate,
            epochs=settings.grpo_epochs,
            max_steps=settings.grpo_max_steps,
            batch_size=settings.grpo_prompts_per_step * settings.grpo_num_generations,
            grad_accum=settings.grpo_grad_accum,
            progress=progress,
        ),
        num_generations=settings.grpo_num_generations,
        max_completion_length=settings.grpo_max_completion_length,
        temperature=settings.grpo_temperature,
        beta=settings.grpo_beta,
        **rollout_arguments(settings),
    )
    clock = StepClock()
    trainer = GRPOTrainer(
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
                          dropped, len(rows), reward_key="reward")
