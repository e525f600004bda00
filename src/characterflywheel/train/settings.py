"""The ``[train]`` config section (herding: SFT, DPO, Online DPO, GRPO) and its preset values.

Fields are flat with a recipe prefix (``sft_learning_rate``, ``dpo_beta``, ...) rather than nested
tables so that ``characterflywheel init`` renders every key with its description and
``--set train.dpo_beta=0.2`` works. Defaults suit a CPU: no gradient checkpointing, short
sequences, bf16 autocast only where the GPU or CPU has native bf16 (``mixed_precision = "auto"``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from characterflywheel.section import Section

RECIPES = ("sft", "dpo", "online_dpo", "grpo")
RecipeName = Literal["sft", "dpo", "online_dpo", "grpo"]
HistoryFeature = Literal["emoji"]
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfig(Section):
    # ---- plan
    recipes: list[RecipeName] = Field(
        default_factory=lambda: ["sft", "dpo"],
        description="Recipes run in order for a generation, each child the next parent: sft, dpo, online_dpo, grpo.",
    )
    seed: int = Field(0, description="Seed for weights init of adapters, data order and sampling.")
    # ---- shared trainer settings
    save_steps: int = Field(50, ge=1, description="Optimizer steps between checkpoints in the work directory.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept in the work directory at most.")
    keep_checkpoints: bool = Field(
        False, description="Keep the work directory's checkpoints after the child is saved (they hold optimizer state)."
    )
    logging_steps: int = Field(1, ge=1, description="Optimizer steps between logged metrics.")
    own_process: bool = Field(
        True,
        description="The flywheel's herd stage trains each recipe in a fresh process of its own, so a trainer's "
        "peak memory goes back to the OS when it ends and never adds to what the run process, or the recipe "
        "before it, held.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass (saves GPU memory, costs ~30% time; off on CPU)."
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 (autocast) on a GPU or CPU that multiplies bf16 natively (AVX512-BF16, AMX), else fp32."
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps with a linear learning-rate warm-up.")
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field("linear", description="Learning-rate schedule.")
    # ---- LoRA (merged into the child on save)
    lora: bool = Field(False, description="Train a LoRA adapter (merged into the child on save) instead of all weights.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    lora_save: Literal["merged", "adapter"] = Field(
        "merged", description="A LoRA child as a plain HF folder with the adapter merged in (merged: any tool loads "
        "it), or the adapter alone on its parent's folder (adapter: MBs per generation instead of a model copy; "
        "this project's backends and recipes load it, merging on load).")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS), description="Module names LoRA adapts."
    )
    # ---- data preprocessing
    strip_history_features: list[HistoryFeature] = Field(
        default_factory=list,
        description="Features removed from prompt histories (not from targets) before training, e.g. [\"emoji\"].",
    )
    # ---- SFT
    sft_learning_rate: float = Field(2e-5, gt=0, description="SFT learning rate.")
    sft_epochs: float = Field(1.0, gt=0, description="SFT epochs (ignored when sft_max_steps > 0).")
    sft_max_steps: int = Field(-1, description="SFT optimizer steps; -1 = run sft_epochs.")
    sft_batch_size: int = Field(8, ge=1, description="SFT conversations per device batch.")
    sft_grad_accum: int = Field(1, ge=1, description="SFT gradient accumulation steps.")
    sft_max_length: int = Field(
        384, ge=16, description="SFT tokens per example at most; older history turns are dropped to fit."
    )
    sft_padding_free: bool = Field(
        True, description="Concatenate a batch into one row without padding (block-diagonal attention)."
    )
    # ---- DPO
    dpo_learning_rate: float = Field(5e-6, gt=0, description="DPO learning rate.")
    dpo_epochs: float = Field(1.0, gt=0, description="DPO epochs (ignored when dpo_max_steps > 0).")
    dpo_max_steps: int = Field(-1, description="DPO optimizer steps; -1 = run dpo_epochs.")
    dpo_batch_size: int = Field(4, ge=1, description="DPO preference pairs per device batch.")
    dpo_grad_accum: int = Field(1, ge=1, description="DPO gradient accumulation steps.")
    dpo_max_length: int = Field(
        384, ge=16, description="DPO prompt + reply tokens at most; older history turns are dropped to fit."
    )
    dpo_beta: float = Field(0.1, gt=0, description="DPO beta (strength of the pull to the parent).")
    dpo_sft_loss_weight: float = Field(
        0.0, ge=0, description="Weight of an NLL (SFT) loss on the chosen reply added to DPO's (RPO; TRL's loss_type "
        "['sigmoid', 'sft']); 0: DPO alone.")
    dpo_share_prompt: bool = Field(
        True, description="Run each pair's shared prompt through the policy once, as one packed row (prompt, chosen, "
        "rejected) under a mask that hides the chosen reply from the rejected one; the log-probs are TRL's "
        "(train/shared_prompt.py). false: TRL's two padded rows a pair.")
    # ---- Online DPO
    online_dpo_learning_rate: float = Field(5e-6, gt=0, description="Online DPO learning rate.")
    online_dpo_max_steps: int = Field(-1, description="Online DPO optimizer steps; -1 = run online_dpo_epochs.")
    online_dpo_epochs: float = Field(1.0, gt=0, description="Online DPO epochs (ignored when max steps > 0).")
    online_dpo_batch_size: int = Field(4, ge=1, description="Online DPO prompts per device batch (2 replies each).")
    online_dpo_grad_accum: int = Field(1, ge=1, description="Online DPO gradient accumulation steps.")
    online_dpo_beta: float = Field(0.1, gt=0, description="Online DPO beta.")
    online_dpo_max_new_tokens: int = Field(48, ge=1, description="Online DPO tokens per sampled reply at most.")
    online_dpo_temperature: float = Field(0.9, gt=0, description="Online DPO sampling temperature.")
    online_dpo_max_length: int = Field(384, ge=16, description="Online DPO prompt + reply tokens at most.")
    # ---- GRPO
    grpo_learning_rate: float = Field(1e-6, gt=0, description="GRPO learning rate.")
    grpo_max_steps: int = Field(-1, description="GRPO optimizer steps; -1 = run grpo_epochs.")
    grpo_epochs: float = Field(1.0, gt=0, description="GRPO epochs (ignored when grpo_max_steps > 0).")
    grpo_prompts_per_step: int = Field(2, ge=1, description="GRPO prompts per device step (each sampled num_generations times).")
    grpo_grad_accum: int = Field(1, ge=1, description="GRPO gradient accumulation steps.")
    grpo_num_generations: int = Field(4, ge=2, description="GRPO replies sampled per prompt (the group).")
    grpo_max_completion_length: int = Field(48, ge=1, description="GRPO tokens per sampled reply at most.")
    grpo_max_prompt_tokens: int = Field(
        320, ge=16, description="GRPO prompt tokens at most; older history turns are dropped to fit."
    )
    grpo_temperature: float = Field(1.0, gt=0, description="GRPO sampling temperature.")
    grpo_beta: float = Field(0.0, ge=0, description="GRPO KL coefficient (0: no reference model, TRL's default).")
    # ---- rollouts
    rollout_backend: Literal["hf", "vllm_server"] = Field(
        "hf",
        description="GRPO / Online DPO rollouts: hf (transformers generate, CPU) or vllm_server (a running `trl vllm-serve`).",
    )
    vllm_server_base_url: str = Field(
        "", description="vllm_server rollouts: the `trl vllm-serve` URL, e.g. http://10.0.0.5:8000."
    )

    @model_validator(mode="after")
    def _check_vllm(self) -> TrainConfig:
        if self.rollout_backend == "vllm_server" and not self.vllm_server_base_url:
            raise ValueError("rollout_backend = vllm_server needs vllm_server_base_url")
        return self


# Merged into config.PRESETS["tiny"] / ["demo"] under the "train" key.
PRESETS: dict[str, dict[str, Any]] = {
    # A couple of optimizer steps on short sequences: seconds per recipe.
    "tiny": {
        "sft_max_steps": 2, "sft_batch_size": 4, "sft_max_length": 320,
        "dpo_max_steps": 2, "dpo_batch_size": 2, "dpo_max_length": 320,
        "online_dpo_max_steps": 2, "online_dpo_batch_size": 2, "online_dpo_max_new_tokens": 16,
        "online_dpo_max_length": 128,
        "grpo_max_steps": 2, "grpo_prompts_per_step": 1, "grpo_num_generations": 2,
        "grpo_max_completion_length": 16, "grpo_max_prompt_tokens": 112,
        "save_steps": 1, "own_process": False,  # the suite herds dozens of times: no process start-up each
    },
    # Minutes on a 2-core laptop (a full fine-tune step of 8 x 256 tokens is ~15 s there).
    "demo": {
        # LoRA at a rate that moves a 135M policy in a few dozen rows: a full fine-tune of 8 steps at 5e-5
        # with linear decay barely moved it, and 4 DPO steps at 2e-5 not at all (loss 0.693 -> 0.728).
        # 16 SFT steps of 4 rows: ~3 epochs of one generation's ~20 rows, ~1.5 once replay has added earlier
        # generations' rows (the herd stage's time stays flat). DPO at 5e-5 moved its loss by 0.02 in 5 steps.
        "lora": True, "lora_r": 16, "lora_alpha": 32, "lr_scheduler": "constant", "lora_save": "adapter",
        # 2 rows a batch with 2 accumulation steps (4 an update): 2.8 GB peak RSS against 3.8 GB at 4 x 1.
        "sft_max_steps": 16, "sft_batch_size": 2, "sft_grad_accum": 2, "sft_max_length": 320, "sft_learning_rate": 3e-4,
        # DPO's 4 pairs are 8 padded sequences plus the reference pass: 7.8 GB peak RSS at 4 a batch, 4.8 GB
        # at 2 with 2 accumulation steps, 3.6 GB at 1 with 4 (the same 4 pairs an update; docs/benchmarks.md).
        # At 1e-4 x 8 steps the DPO loss moved 0.693 -> 0.68 over five generations: the pairs taught nothing.
        "dpo_max_steps": 16, "dpo_batch_size": 1, "dpo_grad_accum": 4, "dpo_max_length": 320,
        "dpo_learning_rate": 5e-4,
        # RPO (an NLL term on the chosen reply): DPO at 5e-4 taught two children "I's" for "I'm" (52 and 12 of
        # 512 truth-set replies; their SFT-only children 1 and 0); with it 22 and 2, at -0.008 and -0.003
        # P(continue) (CIs about +-0.025; docs/climb.md, "Eleventh round").
        "dpo_sft_loss_weight": 1.0,
        "online_dpo_max_steps": 4, "grpo_max_steps": 4,
        "save_steps": 8,
    },
}
