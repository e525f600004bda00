"""vLLM's CPU server against the local ``fast`` backend on the same prompts: start-up time and
aggregate tokens/s.

Usage: ``python benchmarks/vllm.py [--prompts 48] [--n 4] [--concurrency 48]`` (after ``make vllm``).

Prompts are ``benchmarks/generation.py``'s chit-chat turns behind its character system prompt; every
case samples (temperature 0.8, top_p 0.95) up to 64 new tokens. vLLM serves the embedded SmolLM2
folder in bf16 (``models.vllm_server``); the client is the project's ``openai`` backend with
``--concurrency`` requests in flight. Tokens are counted with the policy's tokenizer on the replies
(both sides alike); tok/s is over wall time, prefill included.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from generation import chitchat_conversations  # noqa: E402

from characterflywheel.models import EMBEDDED_POLICY, SamplingParams, make_backend, resolve_model  # noqa: E402
from characterflywheel.models.loading import local_generation_dtype  # noqa: E402
from characterflywheel.models.vllm_server import running_vllm  # noqa: E402


def timed(backend, conversations, params) -> tuple[float, list[str]]:
    started = time.perf_counter()
    replies = [reply for group in backend.chat(conversations, params) for reply in group]
    return time.perf_counter() - started, replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32, help="the fast backend's slots")
    args = parser.parse_args()
    model = resolve_model(EMBEDDED_POLICY)
    conversations = chitchat_conversations(args.prompts)  # each behind the character's system prompt
    params = SamplingParams(max_new_tokens=64, temperature=0.8, top_p=0.95, n=args.n, seed=0)

    fast = make_backend("fast", model, batch_size=args.batch_size, dtype=local_generation_dtype("auto"))
    tokens = lambda replies: sum(len(fast.tokenizer(reply)["input_ids"]) for reply in replies)  # noqa: E731
    seconds, replies = timed(fast, conversations, params)
    print(f"fast ({args.batch_size} slots): {len(replies)} replies, {tokens(replies)} tokens in {seconds:.1f} s: "
          f"{tokens(replies) / seconds:.0f} tok/s")
    del fast.lean

    log = Path(tempfile.mkdtemp(prefix="vllm-bench-")) / "server.log"
    started = time.perf_counter()
    with running_vllm(model, served_model="policy", log_path=log) as base_url:
        print(f"vLLM start-up: {time.perf_counter() - started:.0f} s (log {log})")
        remote = make_backend("openai", model, base_url=base_url, served_model="policy", concurrency=args.concurrency,
                              forward_seed=False)
        timed(remote, conversations[:2], params)  # first requests compile and warm up
        seconds, replies = timed(remote, conversations, params)
        print(f"vLLM ({args.concurrency} in flight): {len(replies)} replies, {tokens(replies)} tokens in "
              f"{seconds:.1f} s: {tokens(replies) / seconds:.0f} tok/s")


if __name__ == "__main__":
    main()
