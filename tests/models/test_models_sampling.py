"""Nucleus sampling: exact HF top-p semantics, seeds, and the top-k fast path's fallbacks."""

from __future__ import annotations

import pytest
import torch

from characterflywheel.models.sampling import sample_next_tokens


def nucleus_by_sorting(logits: torch.Tensor, temperature: float, top_p: float) -> list[set[int]]:
    """Reference: HF TopPLogitsWarper's kept set, row by row."""
    probs = torch.softmax(logits / temperature, dim=-1)
    kept = []
    for row in probs:
        values, ids = row.sort(descending=True)
        before = values.cumsum(0) - values
        kept.append(set(ids[before < top_p].tolist()))
    return kept


def test_temperature_zero_is_argmax() -> None:
    logits = torch.randn(8, 100)
    assert torch.equal(sample_next_tokens(logits, 0.0, 0.9), logits.argmax(dim=-1))


def test_tiny_top_p_keeps_only_the_most_likely_token() -> None:
    logits = torch.randn(16, 500)
    tokens = sample_next_tokens(logits, 1.0, 1e-6, torch.Generator().manual_seed(0))
    assert torch.equal(tokens, logits.argmax(dim=-1))


@pytest.mark.parametrize("stages", [(64, 512, 4096), (2, 8), ()])
def test_samples_stay_inside_the_exact_nucleus(stages: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    # Mix peaked and flat rows so that every stage and the full-sort fallback are used.
    logits = torch.randn(64, 3000) * torch.linspace(0.2, 8.0, 64)[:, None]
    kept = nucleus_by_sorting(logits, 0.8, 0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        tokens = sample_next_tokens(logits, 0.8, 0.9, generator, top_k_stages=stages)
        assert all(int(t) in allowed for t, allowed in zip(tokens, kept, strict=True))


def test_frequencies_follow_the_renormalised_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next_tokens(logits.expand(500, 4), 1.0, 0.9, generator) for _ in range(8)])
    counts = torch.bincount(draws, minlength=4).float() / len(draws)
    # Kept: 0.5, 0.3, 0.15 (mass before the last one is 0.8 < 0.9); 0.05 is cut.
    assert counts[3] == 0
    assert torch.allclose(counts[:3], torch.tensor([0.5, 0.3, 0.15]) / 0.95, atol=0.03)


def test_same_seed_same_tokens_and_top_p_one_samples_everything() -> None:
    logits = torch.zeros(1, 10)
    first = sample_next_tokens(logits.expand(2000, 10), 1.0, 1.0, torch.Generator().manual_seed(3))
    again = sample_next_tokens(logits.expand(2000, 10), 1.0, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert set(first.tolist()) == set(range(10))
