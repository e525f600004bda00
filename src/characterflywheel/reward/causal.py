"""Pointwise reward model on a causal-LM backbone (for teams with GPUs), trained by TRL's
RewardTrainer: ``AutoModelForSequenceClassification`` with a one-output value head on the last
non-padding token, Bradley-Terry loss on chosen / rejected.

Data: conversational rows ``{"prompt": [system (cut to system_chars), last history_messages
messages], "chosen": [{"role": "assistant", ...}], "rejected": [...]}``. RewardTrainer takes pairs
only, so ratings become pairs too: two rating annotations of the same prompt with different ratings
give one pair (higher rating chosen), at most ``RATING_PAIRS_PER_PROMPT`` per prompt. TRL drops a
pair whose tokenised chat is longer than ``max_length``; their number is reported. The saved folder
has ``style = "chat"`` so the scorer tokenises exactly the way training did (chat template, then
cut from the left). Resume: TRL writes a checkpoint per epoch into ``work_dir/pointwise_causal`` and
training resumes from the last one (``transformers.trainer_utils.get_last_checkpoint``). No
ordinal thresholds are fitted here, so the rating MAE is not reported (Spearman is).
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from characterflywheel.reward.backbones import (
    SequenceModel,
    freeze_lower_layers,
    chat_messages,
    encode_chat,
    load_backbone,
    pick_device,
    save_folder,
)
from characterflywheel.models.progress import show_bars
from characterflywheel.reward.examples import PreferenceExample, RatingExample
from characterflywheel.reward.scorer import KIND, PointwiseScorer, input_format, normalisation, unique_replies
from characterflywheel.reward.settings import RewardConfig

RATING_PAIRS_PER_PROMPT = 4


def rating_pairs(ratings: list[RatingExample]) -> list[PreferenceExample]:
    by_group: dict[str, list[RatingExample]] = defaultdict(list)
    for rating in ratings:
        by_group[rating.group].append(rating)
    pairs = []
    for group, items in by_group.items():
        made = 0
        for a, b in itertools.combinations(items, 2):
            if a.rating != b.rating and a.reply != b.reply and made < RATING_PAIRS_PER_PROMPT:
                better, worse = (a, b) if a.rating > b.rating else (b, a)
                pairs.append(PreferenceExample(group, better.prompt, better.reply, worse.reply, True))
                made += 1
    return pairs


def preference_rows(preferences: list[PreferenceExample], settings: RewardConfig) -> list[dict[str, Any]]:
    fmt = input_format(settings)
    rows = []
    for p in preferences:
        chosen, rejected = (p.first, p.second) if p.first_better else (p.second, p.first)
        rows.append({"prompt": chat_messages(p.prompt, "", fmt)[:-1],
                     "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}]})
    return rows


def train_pointwise_causal(ratings: list[RatingExample], preferences: list[PreferenceExample], out: Path,
                           settings: RewardConfig, work_dir: Path | str | None,
                           progress: bool) -> tuple[PointwiseScorer, dict[str, Any]]:
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    device = pick_device(settings.device)
    fmt = input_format(settings)
    pairs = [*preferences, *rating_pairs(ratings)]
    if not pairs:
        raise ValueError("the causal-LM pointwise model needs preference pairs (or ratings that differ per prompt)")
    rows = preference_rows(pairs, settings)
    model, tokenizer = load_backbone(settings.backbone, num_labels=1, seed=settings.seed)
    freeze_lower_layers(model, settings.trainable_layers)
    uncut = dataclasses.replace(fmt, max_length=10**6)
    lengths = [len(encode_chat(tokenizer, [p.prompt], [reply], uncut)["input_ids"][0])
               for p in pairs for reply in (p.first, p.second)]
    over = sum(1 for i in range(0, len(lengths), 2) if max(lengths[i], lengths[i + 1]) > fmt.max_length)
    scratch = None
    if work_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="reward-causal-")
        output_dir = Path(scratch.name)
    else:
        output_dir = Path(work_dir) / "pointwise_causal"
    args = TrlRewardConfig(
        output_dir=str(output_dir), num_train_epochs=settings.epochs, max_steps=settings.causal_max_steps,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.lr,
        weight_decay=settings.weight_decay, warmup_steps=settings.warmup_share, seed=settings.seed,
        max_length=fmt.max_length, save_strategy="epoch", logging_steps=10, report_to="none",
        use_cpu=device.type == "cpu", bf16=False, activation_checkpointing=False,
        disable_tqdm=not show_bars(progress))
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    result = trainer.train(resume_from_checkpoint=last)
    trained = trainer.model
    trained.eval()
    sequence = SequenceModel(trained, tokenizer, fmt, "chat", next(trained.parameters()).device, settings.eval_batch_size)
    prompts, replies = unique_replies(ratings, preferences)
    train_scores = sequence.logits(prompts, [(r,) for r in replies])[:, 0]
    config = {"kind": KIND, "style": "chat", "input": fmt.to_dict(), "backbone": settings.backbone,
              "normalisation": normalisation(train_scores), "thresholds": None}
    save_folder(out, trained, tokenizer, config)
    if scratch is not None:
        scratch.cleanup()
    return PointwiseScorer(sequence, config), {"trainer": "trl.RewardTrainer", "pairs": len(pairs),
                                               "pairs_over_max_length": over,
                                               "train_loss": float(result.training_loss),
                                               "resumed_from": str(last) if last else None}
