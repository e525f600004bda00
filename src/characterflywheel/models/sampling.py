"""Next-token sampling (temperature + nucleus/top-p) for the fast backend.

Semantics match ``transformers``' ``TemperatureLogitsWarper`` + ``TopPLogitsWarper``: a
token is kept when the probability mass of the tokens strictly more likely than it is
below ``top_p`` (so the most likely token is always kept), then the kept tokens are
renormalised and sampled. ``temperature == 0`` is greedy argmax.

Why not the HF warpers: they sort the whole vocabulary (49k entries for SmolLM2) for every
row at every step, which costs as much as a sizeable part of the model's forward pass at
batch 64 on a 2-core CPU. Here the nucleus is first looked for among the ``top_k_hint``
most likely tokens; only rows whose nucleus is not contained there fall back to a full
sort, so the result is exact.
"""

from __future__ import annotations

import torch

TOP_K_STAGES = (64, 512, 4096)  # look for each row's nucleus among this many tokens, then the full sort


def sample_next_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
    top_k_stages: tuple[int, ...] = TOP_K_STAGES,
) -> torch.Tensor:
    """One sampled token id per row of ``logits`` ([rows, vocab], float32) -> [rows] int64."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_p >= 1.0:
        return torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator).squeeze(1)
    log_norm = torch.logsumexp(scaled, dim=-1, keepdim=True)
    tokens = torch.empty(scaled.shape[0], dtype=torch.long)
    pending = torch.arange(scaled.shape[0])
    for k in (*top_k_stages, scaled.shape[-1]):
        k = min(k, scaled.shape[-1])
        sampled, unresolved = _sample_nucleus_within_top_k(
            scaled[pending], log_norm[pending], top_p, k, generator, last=k == scaled.shape[-1]
        )
        resolved = ~unresolved
        tokens[pending[resolved]] = sampled[resolved]
        pending = pending[unresolved]
        if len(pending) == 0:
            break
    return tokens


def _sample_nucleus_within_top_k(
    scaled: torch.Tensor,
    log_norm: torch.Tensor,
    top_p: float,
    k: int,
    generator: torch.Generator | None,
    last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample rows whose nucleus lies within their ``k`` most likely tokens; also returns the
    mask of rows where it may not (their k-th token is still inside the nucleus)."""
    top_logits, top_ids = scaled.topk(k, dim=-1) if not last else scaled.sort(dim=-1, descending=True)
    top_probs = (top_logits - log_norm).exp()
    mass_before = top_probs.cumsum(dim=-1) - top_probs
    keep = mass_before < top_p
    unresolved = keep[:, -1] if not last else torch.zeros(len(scaled), dtype=torch.bool)
    weights = torch.where(keep, top_probs, torch.zeros_like(top_probs))
    picked = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return top_ids.gather(1, picked[:, None]).squeeze(1), unresolved
