"""Throughput of the local generation backends on real chit-chat prompts.

Usage: ``python benchmarks/generation.py [--quick] [--model SPEC] [--only NAME ...] [--projections]``

Prompts are the last turns (ending with a user turn, at most three messages) of
conversations from the PyPI ``chitchat_dataset`` package (each message cut at 300
characters), behind a short character system prompt; a fixed list of human-like prompts is used if the package is missing. Every case
samples (temperature 0.8, top_p 0.95) up to 64 new tokens. tok/s counts the tokens really
generated (replies may stop early at end-of-turn) over wall time, prefill included; the
last column is the speed-up over ``transformers`` at batch 1. Peak RSS is the process's
high-water mark after each case (it only grows). The ``fast int8`` cases run the decoder layers'
projections int8 (``generation.dtype = "int8"``; models/int8.py); ``--projections`` first prints one
projection's time a call (576 -> 3,072, the MLP's fused gate/up) in fp32 and int8 at the row counts a
decode step sees.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from characterflywheel.models import EMBEDDED_POLICY, SamplingParams  # noqa: E402
from characterflywheel.models.fast_backend import FastBackend  # noqa: E402
from characterflywheel.models.loading import load_policy  # noqa: E402
from characterflywheel.models.transformers_backend import TransformersBackend  # noqa: E402

SYSTEM_PROMPT = "You are Robin, a warm and curious friend. Keep your replies short, casual and engaging."
FALLBACK_PROMPTS = [
    "hey! how was your weekend?",
    "i just got back from a run and i'm exhausted lol",
    "what kind of music are you into these days?",
    "my cat knocked my coffee off the table again",
    "do you think it's weird to eat cereal for dinner?",
    "i can't decide whether to learn guitar or piano",
    "ugh mondays. how are you holding up?",
    "have you seen any good movies lately?",
]
NEW_TOKENS = 64
MAX_MESSAGE_CHARS = 300  # a few chit-chat messages are pasted essays; keep prompts chat-sized


@dataclass(frozen=True)
class Case:
    label: str
    backend: str
    prompts: int
    n: int
    make: Callable[[], object]


def chitchat_conversations(count: int) -> list[list[dict[str, str]]]:
    try:
        import chitchat_dataset

        path = Path(chitchat_dataset.__file__).with_name("dataset.json")
        raw = json.loads(path.read_text())
    except (ImportError, OSError, ValueError):
        raw = {}
    conversations = [_last_turns(c["messages"]) for c in raw.values()]
    conversations = [c for c in conversations if c]
    if not conversations:
        conversations = [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": p}] for p in FALLBACK_PROMPTS]
    return [conversations[i % len(conversations)] for i in range(count)]


def _last_turns(messages: list[list[dict[str, str]]], turns: int = 3) -> list[dict[str, str]]:
    """A chit-chat exchange as the character sees it: the other person is ``user``."""
    texts = [" ".join(u["text"] for u in message).strip()[:MAX_MESSAGE_CHARS] for message in messages[: turns + 1]]
    texts = [t for t in texts if t][:turns]
    if len(texts) % 2 == 0:
        texts = texts[:-1]
    if not texts:
        return []
    roles = ["user" if i % 2 == 0 else "assistant" for i in range(len(texts))]
    return [{"role": "system", "content": SYSTEM_PROMPT}] + [
        {"role": r, "content": t} for r, t in zip(roles, texts, strict=True)
    ]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: Case, backend: object) -> tuple[float, int, float]:
    conversations = chitchat_conversations(case.prompts)
    params = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0.8, top_p=0.95, n=case.n, seed=0)
    before = backend.generated_tokens
    start = time.perf_counter()
    if case.label.endswith("batch 1"):
        for conversation in conversations:  # one request at a time
            backend.chat([conversation], params)
    else:
        backend.chat(conversations, params)
    elapsed = time.perf_counter() - start
    tokens = backend.generated_tokens - before
    return tokens / elapsed, tokens, elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts (about a minute)")
    parser.add_argument("--model", default=EMBEDDED_POLICY)
    parser.add_argument("--batch-size", type=int, default=128, help="fast backend slots")
    parser.add_argument("--only", nargs="*", help="run only cases whose label contains one of these words")
    parser.add_argument("--projections", action="store_true", help="first time one projection, fp32 vs int8")
    args = parser.parse_args(argv)
    if args.projections:
        projection_timings()

    single, batched = (2, 32) if args.quick else (6, 64)
    model, tokenizer = load_policy(args.model)
    backends: dict[str, object] = {}

    def cached(key: str, factory: Callable[[], object]) -> Callable[[], object]:
        def get() -> object:
            if key not in backends:
                backends[key] = factory()
            return backends[key]

        return get

    transformers_b = cached("tf", lambda: TransformersBackend(model, tokenizer, batch_size=16))
    fast_b = cached("fast", lambda: FastBackend(model, tokenizer, batch_size=args.batch_size))
    int8_b = cached("int8", lambda: FastBackend(model, tokenizer, batch_size=args.batch_size, int8=True))
    cases = [
        Case("transformers batch 1", "transformers", single, 1, transformers_b),
        Case(f"transformers {batched} prompts", "transformers", batched, 1, transformers_b),
        Case("fast batch 1", "fast", single, 1, fast_b),
        Case(f"fast {batched} prompts", "fast", batched, 1, fast_b),
        Case(f"fast {batched} prompts x n=4", "fast", batched, 4, fast_b),
        Case(f"fast int8 {batched} prompts", "fast", batched, 1, int8_b),
        Case(f"fast int8 {batched} prompts x n=4", "fast", batched, 4, int8_b),
    ]
    if args.only:
        cases = [c for c in cases if any(word in c.label for word in args.only)]

    print(f"model {args.model}, {NEW_TOKENS} new tokens, temperature 0.8, top_p 0.95, torch threads {_threads()}")
    header = f"{'case':34} {'tokens':>7} {'seconds':>8} {'tok/s':>8} {'x tf b1':>8} {'peak RSS MiB':>13}"
    print(header)
    print("-" * len(header))
    baseline: float | None = None
    for case in cases:
        speed, tokens, elapsed = run_case(case, case.make())
        if case.label == "transformers batch 1":
            baseline = speed
        ratio = f"{speed / baseline:.1f}" if baseline else "-"
        print(f"{case.label:34} {tokens:7d} {elapsed:8.1f} {speed:8.1f} {ratio:>8} {peak_rss_mib():13.0f}", flush=True)


def projection_timings(rows: tuple[int, ...] = (8, 24, 64, 128), calls: int = 300) -> None:
    """Microseconds a call of a 576 -> 3,072 projection, fp32 against int8 (quantisation and smoothing included)."""
    import torch

    from characterflywheel.models.int8 import Int8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(576, 3072, bias=False)
    quantized = Int8Linear(linear, torch.rand(576) * 4)

    def per_call(module: torch.nn.Module, x: object) -> float:
        for _ in range(10):
            module(x)
        start = time.perf_counter()
        for _ in range(calls):
            module(x)
        return (time.perf_counter() - start) / calls * 1e6

    print(f"{'rows':>5} {'fp32 us':>9} {'int8 us':>9} {'speed-up':>9}")
    with torch.inference_mode():
        for count in rows:
            x = torch.randn(count, 576)
            fp32, int8 = per_call(linear, x), per_call(quantized, x)
            print(f"{count:5d} {fp32:9.0f} {int8:9.0f} {fp32 / int8:9.1f}", flush=True)
    print()


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main(sys.argv[1:])
