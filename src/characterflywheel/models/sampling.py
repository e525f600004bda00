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

TOP_K_HINT = 256


def sample_next_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
    top_k_hint: int = TOP_K_HINT,
) -> torch.Tensor:
    """One sampled token id per row of ``logits`` ([rows, vocab], float32) -> [rows] int64."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_p >= 1.0:
        return torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator).squeeze(1)
    k = min(top_k_hint, scaled.shape[-1])
    log_norm = torch.logsumexp(scaled, dim=-1, keepdim=True)
    top_logits, top_ids = scaled.topk(k, dim=-1)  # sorted descending
    top_probs = (top_logits - log_norm).exp()
    mass_before = top_probs.cumsum(dim=-1) - top_probs
    keep = mass_before < top_p
    # A row whose k-th token is still kept may need tokens beyond the top k: sort it fully.
    needs_full_sort = keep[:, -1]
    if bool(needs_full_sort.any()):
        rows = needs_full_sort.nonzero().squeeze(1)
        full = _nucleus_by_full_sort(scaled[rows], top_p, generator)
    weights = torch.where(keep, top_probs, torch.zeros_like(top_probs))
    picked = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    tokens = top_ids.gather(1, picked[:, None]).squeeze(1)
    if bool(needs_full_sort.any()):
        tokens[rows] = full
    return tokens


def _nucleus_by_full_sort(scaled: torch.Tensor, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    probs = torch.softmax(scaled, dim=-1)
    sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    weights = torch.where(mass_before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
    picked = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return sorted_ids.gather(1, picked[:, None]).squeeze(1)
