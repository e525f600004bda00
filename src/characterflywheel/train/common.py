"""Plumbing the four recipes share: loading the parent, LoRA, trainer arguments, resume, saving the
child, reward-function adaptation and metrics.

Assumptions: the parent is a causal LM in a local HF folder (``resolve_model``); trainers run in
bf16 autocast where the GPU or CPU multiplies bf16 natively, else fp32 (``TrainConfig.mixed_precision``); the work
directory belongs to one recipe run, so every ``checkpoint-N`` in it is ours to resume from.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
)

from characterflywheel.models import load_causal_lm, resolve_model
from characterflywheel.models.loading import cpu_has_native_bf16
from characterflywheel.models.progress import show_bars
from characterflywheel.train.settings import TrainConfig

logger = logging.getLogger(__name__)

RewardFn = Callable[[list[list[dict[str, str]]], list[str]], Sequence[float]]
"""``reward_fn(prompts, completions) -> scores``: prompts are chat message lists, completions reply texts."""

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
_FORBIDDEN_REWARD_SOURCES = {"user_signal"}
_FORBIDDEN_REWARD_CLASSES = {"UserSignalModel"}


# ---------------------------------------------------------------------------------------------
# Parent and child
# ---------------------------------------------------------------------------------------------


def score_only_labelled_positions() -> None:
    """Make TRL's fused LM head project only the positions that carry a label on the CPU too.

    TRL 1.16's SFT, DPO and GRPO trainers get per-token log-probs from ``add_fused_lm_head``, which scores
    only the labelled positions on CUDA/XPU but every position elsewhere, to keep tile shapes fixed for
    compilers such as Neuron's. Eager CPU training compiles nothing, and the LM head (a 49k-token
    vocabulary) is a large share of a small policy's compute while the loss reads only the reply: in a
    demo DPO row ~190 of ~245 tokens are prompt. Idempotent; the log-probs and gradients are the same
    (``tests/train/test_common.py``)."""
    from trl.trainer import utils as trl_utils

    if getattr(trl_utils._use_triton, "scores_labelled_only", False):
        return
    compact_on = trl_utils._use_triton

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or compact_on(device)

    compact.scores_labelled_only = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact


def load_parent(spec: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Path]:
    """The parent as a trainable fp32 model, its tokenizer (pad token set) and its folder; TRL's fused LM
    head set to score only labelled positions (``score_only_labelled_positions``)."""
    score_only_labelled_positions()
    folder = resolve_model(spec)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_causal_lm(folder, torch.float32)
    return model, tokenizer, folder


def lora_config(settings: TrainConfig) -> Any | None:
    """A PEFT ``LoraConfig`` when ``settings.lora``, else ``None`` (full fine-tune)."""
    if not settings.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_target_modules),
        task_type="CAUSAL_LM",
    )


def adapter_base_reference(parent_folder: Path, out_dir: Path) -> str:
    """How an adapter child names its parent: relative (``../sft``) when the parent is a sibling step of
    the same herding chain, whose folder is renamed as a whole when its stage completes; else absolute."""
    parent, child = parent_folder.resolve(), out_dir.resolve()
    return f"../{parent.name}" if parent.parent == child.parent else str(parent)


def save_child(trainer: Any, tokenizer: PreTrainedTokenizerBase, parent_folder: Path, out_dir: Path,
               keep_adapter: bool = False) -> Path:
    """Write the trained model: a plain HF folder (a LoRA adapter merged into the weights), or with
    ``keep_adapter`` the adapter alone (MBs, its ``base_model_name_or_path`` the parent's folder, which
    ``models.load_causal_lm`` loads and merges), plus the tokenizer with its chat template and the
    parent's generation config. Only the main process writes (ZeRO-2 keeps full weights on every
    rank, so no gather is needed)."""
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return out_dir
    model = trainer.accelerator.unwrap_model(trainer.model)
    out_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload") and keep_adapter:
        for adapter in model.peft_config.values():
            adapter.base_model_name_or_path = adapter_base_reference(Path(parent_folder), out_dir)
        model.save_pretrained(out_dir, safe_serialization=True)
    else:
        if hasattr(model, "merge_and_unload"):  # a PeftModel: fold the adapter into the base weights
            model = model.merge_and_unload()
        model.config.use_cache = True
        model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    try:
        generation = GenerationConfig.from_pretrained(parent_folder, local_files_only=True)
    except OSError:
        generation = GenerationConfig.from_model_config(model.config)
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------
# Trainer arguments and resume
# ---------------------------------------------------------------------------------------------


def precision_flags(settings: TrainConfig) -> dict[str, bool]:
    """``bf16`` / ``fp16`` for TrainingArguments (TRL defaults bf16 on, wrong for most CPUs). bf16
    without CUDA is CPU autocast, which the Trainer only allows with ``use_cpu``; where the CPU has
    native bf16 it trains the embedded model ~20 % (SFT) to ~40 % (DPO) faster with the same losses
    (measured on a 2-core AMD EPYC)."""
    mode = settings.mixed_precision
    if mode == "auto":
        if torch.cuda.is_available():
            mode = "bf16" if torch.cuda.is_bf16_supported() else "no"
        else:
            mode = "bf16" if cpu_has_native_bf16() else "no"
    cpu_autocast = mode == "bf16" and not torch.cuda.is_available()
    return {"bf16": mode == "bf16", "fp16": mode == "fp16"} | ({"use_cpu": True} if cpu_autocast else {})


def common_arguments(
    settings: TrainConfig,
    work_dir: Path,
    *,
    learning_rate: float,
    epochs: float,
    max_steps: int,
    batch_size: int,
    grad_accum: int,
    progress: bool,
) -> dict[str, Any]:
    """TrainingArguments shared by every recipe (TRL config classes accept them all)."""
    return {
        "output_dir": str(work_dir),
        "learning_rate": learning_rate,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "activation_checkpointing": settings.gradient_checkpointing,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": settings.warmup_ratio,  # transformers 5: a float below 1 is a ratio
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": settings.save_total_limit,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "disable_tqdm": not show_bars(progress),
        **precision_flags(settings),
    }


def resumable_checkpoint(work_dir: Path) -> Path | None:
    """The newest *complete* ``checkpoint-N`` in ``work_dir`` (one with ``trainer_state.json``, which
    the Trainer writes last); incomplete ones left by a kill mid-save are deleted."""
    if not work_dir.is_dir():
        return None
    found = []
    for path in work_dir.iterdir():
        suffix = path.name.removeprefix(CHECKPOINT_PREFIX)
        if path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit():
            found.append((int(suffix), path))
    for _step, path in sorted(found, reverse=True):
        if (path / TRAINER_STATE).is_file():
            return path
        logger.warning("removing incomplete checkpoint %s (killed while saving)", path)
        shutil.rmtree(path, ignore_errors=True)
    return None


# ---------------------------------------------------------------------------------------------
# Rewards for online RL
# ---------------------------------------------------------------------------------------------


def check_reward_fn(reward_fn: RewardFn) -> None:
    """Refuse a user-signal reward: online RL optimises the pointwise(+pairwise) RewardJudge only.

    The paper never uses the engagement (continue / thumbs) predictor as an RL reward: it is
    easy to hack and it is the signal the A/B test must stay an independent check of. A callable
    is refused when it (or the object it is bound to) is a ``UserSignalModel`` or declares
    ``reward_source = "user_signal"``.
    """
    if not callable(reward_fn):
        raise TypeError("reward_fn must be callable: reward_fn(prompts, completions) -> list[float]")
    owners = [reward_fn, getattr(reward_fn, "__self__", None), getattr(reward_fn, "func", None)]
    for owner in owners:
        if owner is None:
            continue
        if getattr(owner, "reward_source", None) in _FORBIDDEN_REWARD_SOURCES:
            raise ValueError("the user-signal model is never an RL reward; pass the RewardJudge's as_reward_fn()")
        classes = {cls.__name__ for cls in type(owner).__mro__}
        if classes & _FORBIDDEN_REWARD_CLASSES:
            raise ValueError("the user-signal model is never an RL reward; pass the RewardJudge's as_reward_fn()")


def completion_text(completion: Any) -> str:
    """A TRL completion (plain text, or conversational ``[{"role": "assistant", "content": ...}]``)."""
    if isinstance(completion, str):
        return completion
    return "".join(message["content"] for message in completion if message.get("role") == "assistant")


def trl_reward_func(reward_fn: RewardFn, name: str = "judge") -> Callable[..., list[float]]:
    """Adapt ``reward_fn(prompts, texts)`` to TRL's ``reward_funcs`` signature
    ``f(prompts, completions, completion_ids, **kwargs) -> list[float]``."""
    check_reward_fn(reward_fn)

    def reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        texts = [completion_text(completion) for completion in completions]
        chats = [prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}] for prompt in prompts]
        scores = [float(score) for score in reward_fn(chats, texts)]
        if len(scores) != len(texts):
            raise ValueError(f"reward_fn returned {len(scores)} scores for {len(texts)} completions")
        return scores

    reward.__name__ = name
    return reward


def rollout_arguments(settings: TrainConfig) -> dict[str, Any]:
    """``use_vllm`` / ``vllm_mode`` / ``vllm_server_base_url`` for GRPO and Online DPO configs."""
    if settings.rollout_backend == "vllm_server":
        return {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": settings.vllm_server_base_url}
    return {"use_vllm": False}


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


@dataclass
class StepClock(TrainerCallback):
    """Wall time of the optimisation steps of this call (excluding set-up and saving)."""

    first_step_started: float | None = None
    last_step_ended: float | None = None
    start_step: int | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.first_step_started is None:
            self.first_step_started = time.perf_counter()
            self.start_step = state.global_step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.last_step_ended = time.perf_counter()


class SkipFinalCheckpoint(TrainerCallback):
    """Skip the Trainer's extra checkpoint at the last step (off the ``save_steps`` grid): the child
    is saved right after, so it would only cost a full weights + optimizer write (~1.6 GB here)."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps and state.global_step % args.save_steps != 0:
            control.should_save = False


def remove_checkpoints(work_dir: Path) -> None:
    """Delete ``checkpoint-N`` folders once the child is saved (they are only for resuming)."""
    if work_dir.is_dir():
        for path in work_dir.iterdir():
            if path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX):
                shutil.rmtree(path, ignore_errors=True)


def _series(history: list[dict[str, Any]], key: str) -> list[float]:
    return [float(entry[key]) for entry in history if key in entry]


def collect_metrics(
    trainer: Any, clock: StepClock, resumed_from: Path | None, dropped: int, examples: int, reward_key: str | None
) -> dict[str, float]:
    """Loss (and reward) at the start and end, steps, tokens/s of this call, from the log history."""
    state = trainer.state
    history = state.log_history
    metrics: dict[str, float] = {
        "steps": float(state.global_step),
        "steps_run": float(state.global_step - (clock.start_step or 0)) if clock.start_step is not None else 0.0,
        "resumed_from_step": float(int(resumed_from.name.removeprefix(CHECKPOINT_PREFIX))) if resumed_from else 0.0,
        "examples": float(examples),
        "examples_dropped_too_long": float(dropped),
    }
    losses = _series(history, "loss")
    if losses:
        metrics["loss_start"], metrics["loss_end"] = losses[0], losses[-1]
    if reward_key:
        rewards = _series(history, reward_key)
        if rewards:
            metrics["reward_start"], metrics["reward_end"] = rewards[0], rewards[-1]
    tokens = _series(history, "num_tokens")
    seconds = (
        clock.last_step_ended - clock.first_step_started
        if clock.first_step_started is not None and clock.last_step_ended is not None
        else 0.0
    )
    metrics["train_seconds"] = seconds
    if tokens and seconds > 0:
        logged_before = [
            float(entry["num_tokens"])
            for entry in history
            if "num_tokens" in entry and entry.get("step", 0) <= (clock.start_step or 0)
        ]
        run_tokens = tokens[-1] - (logged_before[-1] if logged_before else 0.0)
        metrics["tokens"] = run_tokens
        metrics["tokens_per_second"] = run_tokens / seconds
    return metrics


def train_and_save(
    trainer: Any, clock: StepClock, tokenizer: PreTrainedTokenizerBase, parent_folder: Path, out_dir: Path,
    work_dir: Path, settings: TrainConfig, dropped: int, examples: int, reward_key: str | None,
) -> dict[str, float]:
    """Every recipe's last steps: train (resuming from the newest complete checkpoint in ``work_dir``),
    save the child, drop the checkpoints unless kept, and return the metrics."""
    checkpoint = resumable_checkpoint(Path(work_dir))
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    save_child(trainer, tokenizer, parent_folder, Path(out_dir), keep_adapter=settings.lora and settings.lora_save == "adapter")
    if not settings.keep_checkpoints:
        remove_checkpoints(Path(work_dir))
    return collect_metrics(trainer, clock, checkpoint, dropped, examples, reward_key)
