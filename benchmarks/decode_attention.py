"""One decode step's attention in the ``fast`` backend: the written-out grouped matmul and softmax it
used before against the SDPA call it uses now (``LeanLlama._decode_attention``).

Usage: ``python benchmarks/decode_attention.py [--slots 32] [--threads 1 2]``

Shapes are the embedded SmolLM2-135M's (9 query heads sharing 3 key/value heads of 64), bf16, a slot
cache of 2,048 positions read up to ``span`` (the longest history in the batch); each slot's own
history ends somewhere in the second half of the span, masked as in ``LeanLlama.decode``. Time is the
calling thread's CPU time per layer (``time.thread_time``), so a busy machine changes it less than
wall time would; with more than one thread it undercounts, so compare rows of the same thread count.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

KV_HEADS, GROUP, HEAD_DIM, CAPACITY = 3, 3, 64, 2048


def written_out(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    slots = q.shape[0]
    grouped = q.reshape(slots, KV_HEADS, GROUP, HEAD_DIM)
    scores = torch.matmul(grouped, keys.transpose(-1, -2)).mul_(HEAD_DIM**-0.5).add_(bias)
    return torch.matmul(torch.softmax(scores, dim=-1), values).reshape(slots, -1)


def sdpa(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    slots = q.shape[0]
    grouped = q.reshape(slots, KV_HEADS, GROUP, HEAD_DIM)
    return F.scaled_dot_product_attention(grouped, keys, values, attn_mask=bias).reshape(slots, -1)


def per_layer_ms(function, arguments, repeats: int = 30) -> float:
    for _ in range(3):
        function(*arguments)
    start = time.thread_time()
    for _ in range(repeats):
        function(*arguments)
    return (time.thread_time() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--spans", type=int, nargs="+", default=[200, 600, 1200])
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    print(f"{'threads':>7} {'span':>5} {'written out ms':>15} {'sdpa ms':>8} {'speed-up':>8} {'max |diff|':>10}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for span in args.spans:
            cache_shape = (args.slots, KV_HEADS, CAPACITY, HEAD_DIM)
            keys = torch.randn(cache_shape, generator=generator, dtype=torch.bfloat16)[:, :, :span]
            values = torch.randn(cache_shape, generator=generator, dtype=torch.bfloat16)[:, :, :span]
            q = torch.randn(args.slots, KV_HEADS * GROUP, 1, HEAD_DIM, generator=generator, dtype=torch.bfloat16)
            positions = torch.randint(span // 2, span, (args.slots,), generator=generator)
            positions[0] = span - 1
            bias = torch.zeros(args.slots, 1, 1, span, dtype=torch.bfloat16).masked_fill_(
                torch.arange(span)[None, None, None, :] > positions[:, None, None, None], float("-inf"))
            arguments = (q, keys, values, bias)
            old, new = per_layer_ms(written_out, arguments), per_layer_ms(sdpa, arguments)
            diff = (written_out(*arguments).float() - sdpa(*arguments).float()).abs().max().item()
            print(f"{threads:>7} {span:>5} {old:>15.2f} {new:>8.2f} {old / new:>7.1f}x {diff:>10.4f}")


if __name__ == "__main__":
    main()
