"""The lean forward pass matches HF's LLaMA forward on assorted LLaMA-architecture configs."""

from __future__ import annotations

import pytest
import torch

from characterflywheel.models.lean_llama import IncompatibleModelError, LeanLlama, SlotCache

from models_fixtures import build_tiny_llama

VARIANTS = {
    "gqa": {},
    "mha-untied": {"num_key_value_heads": 4, "tie_word_embeddings": False},
    "bias-llama3-rope": {
        "attention_bias": True,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    },
    "mqa-wide-head": {"num_key_value_heads": 1, "head_dim": 32},
}


def hf_next_logits(model, tokens: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([tokens])).logits[0, -1]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_prefill_and_decode_match_hf(variant: str) -> None:
    model = build_tiny_llama(300, **VARIANTS[variant])
    lean = LeanLlama(model)
    lean.ensure_positions(64)
    prompts = [[5, 17, 42, 9, 100, 7], [3, 250, 11], [8, 8, 8, 31, 77, 12, 200, 1, 4]]
    cache = SlotCache(lean.shape, slots=4, capacity=32, dtype=torch.float32)
    longest = max(len(p) for p in prompts)
    tokens = torch.tensor([p + [0] * (longest - len(p)) for p in prompts])  # right padding
    slots = torch.tensor([2, 0, 3])  # any slots, any order
    with torch.inference_mode():
        hidden = lean.prefill(tokens, cache, slots)
        last = hidden[torch.arange(3), torch.tensor([len(p) - 1 for p in prompts])]
        logits = lean.logits(last)
    for row, prompt in enumerate(prompts):
        torch.testing.assert_close(logits[row], hf_next_logits(model, prompt), atol=2e-4, rtol=1e-4)

    # Two decode steps for all three sequences at their own positions.
    continuation = [[61, 62], [71, 72], [81, 82]]
    # decode runs on slots 0..S-1; slot 1 holds nothing and is simply ignored
    for step in range(2):
        step_tokens = torch.zeros(4, dtype=torch.long)
        positions = torch.zeros(4, dtype=torch.long)
        for row, slot in enumerate(slots.tolist()):
            step_tokens[slot] = continuation[row][step]
            positions[slot] = len(prompts[row]) + step
        with torch.inference_mode():
            step_logits = lean.logits(lean.decode(step_tokens, positions, cache))
        for row, slot in enumerate(slots.tolist()):
            expected = hf_next_logits(model, prompts[row] + continuation[row][: step + 1])
            torch.testing.assert_close(step_logits[slot], expected, atol=2e-4, rtol=1e-4)


def test_prefill_after_a_shared_prefix_matches_a_full_prefill() -> None:
    model = build_tiny_llama(300)
    lean = LeanLlama(model)
    lean.ensure_positions(64)
    prefix, suffixes = [1, 2, 3, 4, 5], [[10, 11, 12], [20, 21]]
    cache = SlotCache(lean.shape, slots=2, capacity=16, dtype=torch.float32)
    with torch.inference_mode():
        lean.prefill(torch.tensor([prefix]), cache, torch.tensor([0]))
        cache.copy_prefix(0, torch.tensor([1]), len(prefix))
        hidden = lean.prefill(torch.tensor([suffixes[0], suffixes[1] + [0]]), cache, torch.tensor([0, 1]), start=5)
        logits = lean.logits(hidden[torch.arange(2), torch.tensor([2, 1])])
    for row, suffix in enumerate(suffixes):
        torch.testing.assert_close(logits[row], hf_next_logits(model, prefix + suffix), atol=2e-4, rtol=1e-4)


def test_non_llama_models_are_refused() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(IncompatibleModelError, match="transformers backend"):
        LeanLlama(gpt2)


def test_prefill_rows_with_their_own_cached_prefix_match_a_full_prefill() -> None:
    model = build_tiny_llama(300)
    lean = LeanLlama(model)
    lean.ensure_positions(64)
    prefixes, suffixes = [[1, 2, 3, 4, 5], [7, 8], []], [[10, 11, 12], [20, 21], [30, 31, 32, 33]]
    cache = SlotCache(lean.shape, slots=3, capacity=12, dtype=torch.float32)
    with torch.inference_mode():
        for slot, prefix in enumerate(prefixes[:2]):
            lean.prefill(torch.tensor([prefix]), cache, torch.tensor([slot]))
        stored = cache.read_prefix(0, 5)
        cache.keys[0][0].zero_()  # restoring the stored copy must bring slot 0 back
        cache.write_prefix(0, stored)
        tokens = torch.tensor([suffixes[0] + [0], suffixes[1] + [0, 0], suffixes[2]])
        lengths = torch.tensor([3, 2, 4])
        # slot 0's prompt ends at position 8 and slot 2 starts at 0: padding must not spill past them
        hidden = lean.prefill_rows(tokens, lengths, cache, torch.tensor([0, 1, 2]), torch.tensor([5, 2, 0]))
        logits = lean.logits(hidden[torch.arange(3), lengths - 1])
    for row, (prefix, suffix) in enumerate(zip(prefixes, suffixes)):
        torch.testing.assert_close(logits[row], hf_next_logits(model, prefix + suffix), atol=2e-4, rtol=1e-4)
