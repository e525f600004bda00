"""DPO recipe: direct preference optimisation of the parent on the preference set.

Reads top to bottom: load the parent, read and prepare the pairs, configure TRL's DPOTrainer, train
(resuming from the newest checkpoint in ``work_dir``), save the child.

Data: the contract preference JSONL (``prompt`` messages, one-message ``chosen`` / ``rejected``
assistant replies). The reference model is a frozen copy of the parent (full fine-tune) or the base
weights with the adapter disabled (LoRA), both TRL's defaults. TRL 1.16's DPOTrainer has disabled
padding-free batches, so DPO batches are padded; ``prepare_rows`` keeps every sequence within
``dpo_max_length`` by dropping old history turns rather than cutting the replies. Each pair's prompt
goes through the policy once (``dpo_share_prompt``, ``shared_prompt.py``): TRL runs it once per reply.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from peft import PeftModel
from trl import DPOConfig, DPOTrainer

from characterflywheel.models.progress import quiet_trainer
from characterflywheel.train.common import (
    SkipFinalCheckpoint,
    StepClock,
    common_arguments,
    load_parent,
    lora_config,
    train_and_save,
)
from characterflywheel.train.preprocess import prepare_rows, read_preference_records
from characterflywheel.train.shared_prompt import share_prompt_in_pairs
from characterflywheel.train.settings import TrainConfig


def run_dpo(
    parent: str | Path,
    prefs_path: Path,
    out_dir: Path,
    settings: TrainConfig,
    work_dir: Path,
    progress: bool = False,
) -> dict[str, float]:
    """DPO on the preference set at ``prefs_path``; the child goes to ``out_dir``.

    Returns metrics: ``loss_start``/``loss_end``, ``reward_start``/``reward_end`` (TRL's implicit
    reward margin chosen - rejected), ``steps``, ``steps_run``, ``resumed_from_step``,
    ``tokens_per_second``, ``examples``, ``examples_dropped_too_long``.
    """
    # 1. parent
    model, tokenizer, parent_folder = load_parent(parent)

    # 2. data
    rows = read_preference_records(Path(prefs_path))
    rows, dropped = prepare_rows(
        rows, tokenizer, settings.dpo_max_length, settings.strip_history_features, reply_fields=("chosen", "rejected")
    )
    if not rows:
        raise ValueError(f"{prefs_path}: no preference pair fits dpo_max_length={settings.dpo_max_length}")
    dataset = Dataset.from_list(rows)

    # 3. trainer
    config = DPOConfig(
        **common_arguments(
            settings,
            Path(work_dir),
            learning_rate=settings.dpo_learning_rate,
            epochs=settings.dpo_epochs,
            max_steps=settings.dpo_max_steps,
            batch_size=settings.dpo_batch_size,
            grad_accum=settings.dpo_grad_accum,
            progress=progress,
        ),
        beta=settings.dpo_beta,
        **({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, settings.dpo_sft_loss_weight]}
           if settings.dpo_sft_loss_weight > 0 else {}),
        max_length=settings.dpo_max_length,
        padding_free=False,
    )
    clock = StepClock()
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=[clock, SkipFinalCheckpoint()],
    )
    quiet_trainer(trainer)
    if settings.dpo_share_prompt:
        share_prompt_in_pairs(trainer.model.get_base_model() if isinstance(trainer.model, PeftModel) else trainer.model)
        if trainer.ref_model is not None:
            share_prompt_in_pairs(trainer.ref_model)

    # 4. train (resuming an interrupted run), save the child, report
    return train_and_save(trainer, clock, tokenizer, parent_folder, Path(out_dir), Path(work_dir), settings,
                          dropped, len(rows), reward_key="rewards/margins")
