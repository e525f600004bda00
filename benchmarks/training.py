"""Training throughput of the herding recipes on the embedded SmolLM2-135M (CPU).

Usage: ``python benchmarks/training.py [--quick] [--only NAME ...]``

Cases: TRL SFT, DPO and GRPO steps, each as a full fine-tune and as LoRA (r=16, all linear
layers), plus a plain PyTorch SFT loop (AdamW, padded batches, loss on the reply tokens) on the same
examples as the baseline. Data: chit-chat exchanges from the PyPI ``chitchat_dataset`` package
(system prompt + up to three turns; the last assistant turn is the SFT target; DPO pairs use the
real reply as chosen and a reply from another conversation as rejected; GRPO rewards brevity).
SFT: batch 8, at most 256 tokens per example; DPO: batch 4 pairs; GRPO: 2 prompts x 4 samples of
at most 32 tokens.

tok/s counts the non-padding tokens the model trained on (prompt + reply; for DPO chosen +
rejected; for GRPO prompt + completion) over the wall time of the optimisation steps (set-up and
saving excluded, the first step included). Each case runs in its own process, so peak RSS is that
case's high-water mark. The last line is TRL SFT (full) tok/s over the plain loop's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation import chitchat_conversations  # noqa: E402

from characterflywheel.models import EMBEDDED_POLICY  # noqa: E402

CASES = ["plain-sft", "sft-full", "sft-lora", "dpo-full", "dpo-lora", "grpo-full", "grpo-lora"]
SFT_BATCH, DPO_BATCH, MAX_LENGTH = 8, 4, 256


def sft_conversations(count: int) -> list[list[dict[str, str]]]:
    """Chit-chat exchanges ending with an assistant turn (the reply to learn)."""
    chats = []
    for conversation in chitchat_conversations(count * 4):
        while conversation and conversation[-1]["role"] != "assistant":
            conversation = conversation[:-1]
        if len(conversation) >= 3:
            chats.append(conversation)
    return chats[:count]


def write_data(folder: Path, count: int) -> dict[str, Path]:
    chats = sft_conversations(count)
    rng = random.Random(0)
    sft = folder / "sft.jsonl"
    sft.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in chats))
    prefs = folder / "prefs.jsonl"
    with prefs.open("w") as handle:
        for chat in chats:
            other = rng.choice(chats)[-1]
            handle.write(json.dumps({"prompt": chat[:-1], "chosen": chat[-1:], "rejected": [other]}) + "\n")
    prompts = folder / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": chat[:-1]}) + "\n" for chat in chats))
    return {"sft": sft, "preferences": prefs, "prompts": prompts}


def brevity_reward(prompts: list[list[dict]], completions: list[str]) -> list[float]:
    return [-float(len(text.split())) for text in completions]


def plain_sft(data: Path, steps: int) -> dict[str, float]:
    """The baseline: a plain PyTorch loop over padded batches, loss on the reply tokens only."""
    import torch

    from characterflywheel.train.common import load_parent
    from characterflywheel.train.preprocess import prepare_rows, read_sft_records

    torch.manual_seed(0)
    model, tokenizer, _ = load_parent(EMBEDDED_POLICY)
    model.train()
    rows, _ = prepare_rows(read_sft_records(data), tokenizer, MAX_LENGTH, reply_fields=("completion",))
    examples = []
    for row in rows:
        prompt_ids = tokenizer.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False)
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
        examples.append((full, len(prompt_ids)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    tokens, start = 0, time.perf_counter()
    for step in range(steps):
        batch = [examples[(step * SFT_BATCH + i) % len(examples)] for i in range(SFT_BATCH)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((SFT_BATCH, width), tokenizer.pad_token_id)
        attention = torch.zeros((SFT_BATCH, width), dtype=torch.long)
        labels = torch.full((SFT_BATCH, width), -100)
        for row, (ids, prompt_length) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(attention.sum())
    seconds = time.perf_counter() - start
    return {"steps": float(steps), "tokens": float(tokens), "train_seconds": seconds, "tokens_per_second": tokens / seconds}


def run_one(case: str, folder: Path, steps: int) -> dict[str, float]:
    from characterflywheel.train import run_recipe
    from characterflywheel.train.settings import TrainConfig

    inputs = write_data(folder, count=max(64, steps * SFT_BATCH))
    if case == "plain-sft":
        return plain_sft(inputs["sft"], steps)
    recipe, mode = case.split("-")
    settings = TrainConfig(
        lora=mode == "lora", save_steps=10_000,
        sft_max_steps=steps, sft_batch_size=SFT_BATCH, sft_max_length=MAX_LENGTH,
        dpo_max_steps=steps, dpo_batch_size=DPO_BATCH, dpo_max_length=MAX_LENGTH,
        grpo_max_steps=steps, grpo_prompts_per_step=2, grpo_num_generations=4, grpo_max_completion_length=32,
        grpo_max_prompt_tokens=MAX_LENGTH,
    )
    key = {"sft": "sft", "dpo": "preferences", "grpo": "prompts"}[recipe]
    return run_recipe(recipe, EMBEDDED_POLICY, inputs[key], folder / "child", settings, folder / "work",
                      reward_fn=brevity_reward if recipe == "grpo" else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 steps per case instead of 6")
    parser.add_argument("--only", nargs="*", help="run only cases whose name contains one of these words")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps = args.steps or (2 if args.quick else 6)

    if args.case:
        with tempfile.TemporaryDirectory() as tmp:
            metrics = run_one(args.case, Path(tmp), steps)
        metrics["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(metrics))
        return

    cases = [c for c in CASES if not args.only or any(word in c for word in args.only)]
    print(f"{'case':<12} {'steps':>5} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'s/step':>7} {'peak RSS MiB':>13}")
    results: dict[str, dict[str, float]] = {}
    for case in cases:
        command = [sys.executable, __file__, "--case", case, "--steps", str(steps)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(f"{case:<12} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
            continue
        metrics = results[case] = json.loads(lines[-1].removeprefix("RESULT "))
        print(f"{case:<12} {metrics['steps']:>5.0f} {metrics.get('tokens', 0):>7.0f} {metrics['train_seconds']:>8.1f} "
              f"{metrics.get('tokens_per_second', 0):>7.1f} {metrics['train_seconds'] / max(metrics['steps'], 1):>7.1f} "
              f"{metrics['peak_rss_mib']:>13.0f}", flush=True)
    if "plain-sft" in results and "sft-full" in results:
        ratio = results["sft-full"]["tokens_per_second"] / results["plain-sft"]["tokens_per_second"]
        print(f"TRL SFT (full, padding-free) / plain loop tok/s: {ratio:.2f} (plain is {1 / ratio:.2f}x TRL)")


if __name__ == "__main__":
    main()
