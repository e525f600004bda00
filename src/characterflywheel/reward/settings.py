"""The ``[reward]`` config section (pointwise, pairwise and user-signal reward models, paper 4.1 /
4.2 / 7.4) and its preset values."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from characterflywheel.section import Section


class RewardConfig(Section):
    # ---- backbones
    backbone: str = Field(
        "embedded:all-minilm-l6-v2",
        description="Pointwise backbone: an encoder (fine-tuned with a scalar head by our loop) or a causal LM "
        "(e.g. embedded:smollm2-135m-instruct, trained with TRL's RewardTrainer); a spec or HF folder.",
    )
    pairwise_backbone: str | None = Field(None, description="Pairwise model backbone (null: same as backbone).")
    user_signal_backbone: str | None = Field(None, description="User-signal model backbone (null: same as backbone).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu.")
    # ---- inputs
    encoder_input: Literal["segments", "pair"] = Field(
        "segments", description="Encoder backbones: 'segments' encodes persona, earlier turns, last user line and each "
        "reply on its own (sentence-transformers style: reply/context similarities are features from the start); "
        "'pair' encodes history and reply jointly as one pair (cross-attention, needs more data).",
    )
    max_length: int = Field(256, ge=16, le=4096, description="Tokens per model input at most (history is cut from the left).")
    history_messages: int = Field(4, ge=1, description="Non-system history messages shown to the models (the most recent).")
    system_chars: int = Field(300, ge=0, description="Characters of the system prompt (persona) kept at the start of the history (0: none).")
    reply_share: float = Field(
        0.5, gt=0, lt=1, description="Share of the token budget the reply (or both replies, pairwise) may take before the history."
    )
    # ---- optimisation
    trainable_layers: int | None = Field(
        None, ge=0, description="Encoder training: fine-tune only the top N transformer blocks (+ head); "
        "embeddings and lower blocks frozen (null: all). Cuts CPU training time.",
    )
    epochs: int = Field(3, ge=1, description="Passes over the training split.")
    lr: float = Field(5e-5, gt=0, description="AdamW learning rate (linear warm-up and decay).")
    head_lr_multiplier: float = Field(20.0, gt=0, description="Learning-rate multiplier for the fresh head (and rating thresholds).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_share: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    batch_size: int = Field(16, ge=1, description="Examples per optimisation step.")
    eval_batch_size: int = Field(64, ge=1, description="Examples per scoring batch.")
    seed: int = Field(0, description="Seed for initialisation, shuffling and dropout.")
    rating_weight: float = Field(1.0, ge=0, description="Pointwise: weight of the ordinal rating loss next to the Bradley-Terry loss.")
    heldout_share: float = Field(0.2, gt=0, lt=1, description="Share of prompts (annotations) / conversations (traffic) held out.")
    max_user_signal_rows: int = Field(20000, ge=1, description="Traffic prompt records used to train the user-signal model at most.")
    causal_max_steps: int = Field(-1, description="Causal-LM backbone: RewardTrainer max_steps (-1: epochs decide).")
    # ---- judge
    pairwise_weight: float = Field(
        0.5, ge=0, description="Judge: weight of the pairwise term (centred, scaled mean win probability) next to the standardised pointwise score."
    )


# Merged into config.PRESETS["tiny"] / ["demo"] under the "reward" key.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"max_length": 64, "epochs": 2, "lr": 2e-4, "batch_size": 16, "max_user_signal_rows": 300,
             "history_messages": 2, "system_chars": 0, "trainable_layers": 2},
    # Batches of whole prompts encode each reply once, so 6 epochs cost what 2 did; the head's higher
    # rate matters: at 20x the scores hardly spread (sd 0.005) after a demo-sized training run. The
    # encoder stays frozen (trainable_layers 0): on 576 annotations the head on segment embeddings and
    # their cosines ranks held-out candidates by true P(continue) at 0.69-0.73 (3 seeds); fine-tuning
    # the top 1-2 blocks overfits the noisy labels (0.58-0.63).
    "demo": {"max_length": 96, "epochs": 6, "lr": 1e-4, "head_lr_multiplier": 200, "batch_size": 32,
             "max_user_signal_rows": 3000, "history_messages": 2, "system_chars": 60, "trainable_layers": 0},
}
