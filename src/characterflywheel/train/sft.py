"""SFT recipe: supervised fine-tuning of the parent on the (rejection-sampled) SFT set.

Reads top to bottom like a torchtune recipe: load the parent, read and prepare the data, configure
TRL's SFTTrainer, train (resuming from the newest checkpoint in ``work_dir``), save the child.

Data: the contract SFT JSONL (``messages`` ending with the assistant reply to learn). Each record
becomes a conversational prompt-completion pair so the loss is on the reply only. Batches are
padding-free by default (a batch is one row of concatenated conversations with per-conversation
position ids; transformers builds the block-diagonal attention mask from them, so no token attends
across conversations and no compute goes to padding).
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from characterflywheel.models.progress import quiet_trainer
from characterflywheel.train.common import (
    SkipFinalCheckpoint,
    StepClock,
    common_arguments,
    load_parent,
    lora_config,
    train_and_save,
)
from characterflywheel.train.preprocess import prepare_rows, read_sft_records
from characterflywheel.train.settings import TrainConfig


def run_sft(
    parent: str | Path,
    dataset_path: Path,
    out_dir: Path,
    settings: TrainConfig,
    work_dir: Path,
    progress: bool = False,
) -> dict[str, float]:
    """Fine-tune ``parent`` on the SFT set at ``dataset_path``; the child goes to ``out_dir``.

    Returns metrics: ``loss_start``/``loss_end``, ``steps`` (global), ``steps_run`` (this call),
    ``resumed_from_step``, ``tokens_per_second``, ``examples``, ``examples_dropped_too_long``.
    """
    # 1. parent
    model, tokenizer, parent_folder = load_parent(parent)

    # 2. data: history stripped of configured features, oldest turns dropped to fit max_length
    rows = read_sft_records(Path(dataset_path))
    rows, dropped = prepare_rows(
        rows, tokenizer, settings.sft_max_length, settings.strip_history_features, reply_fields=("completion",)
    )
    if not rows:
        raise ValueError(f"{dataset_path}: no SFT record fits sft_max_length={settings.sft_max_length}")
    dataset = Dataset.from_list(rows)

    # 3. trainer (padding-free needs max_length=None in TRL; prepare_rows already enforced the length)
    config = SFTConfig(
        **common_arguments(
            settings,
            Path(work_dir),
            learning_rate=settings.sft_learning_rate,
            epochs=settings.sft_epochs,
            max_steps=settings.sft_max_steps,
            batch_size=settings.sft_batch_size,
            grad_accum=settings.sft_grad_accum,
            progress=progress,
        ),
        max_length=None if settings.sft_padding_free else settings.sft_max_length,
        padding_free=settings.sft_padding_free,
        completion_only_loss=True,
        dataset_num_proc=None,
    )
    clock = StepClock()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=[clock, SkipFinalCheckpoint()],
    )
    quiet_trainer(trainer)

    # 4. train (resuming an interrupted run), save the child, report
    return train_and_save(trainer, clock, tokenizer, parent_folder, Path(out_dir), Path(work_dir), settings,
                          dropped, len(rows), reward_key=None)
