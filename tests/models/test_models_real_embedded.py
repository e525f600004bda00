"""The REAL embedded models: SmolLM2-135M-Instruct (converted once per session) and MiniLM."""

from __future__ import annotations

import pytest

from characterflywheel.models import EMBEDDED_EMBEDDER, SamplingParams, load_embedder
from characterflywheel.models.fast_backend import FastBackend
from characterflywheel.models.transformers_backend import TransformersBackend

PROMPTS = [
    [{"role": "user", "content": "Hi! How was your weekend?"}],
    [
        {"role": "system", "content": "You are Robin, a warm and curious friend. Keep replies short."},
        {"role": "user", "content": "i just got back from a run and i'm exhausted lol"},
    ],
    [{"role": "user", "content": "Tell me a joke about cats."}],
]


@pytest.mark.slow
def test_real_policy_generates_the_same_greedy_replies_on_both_local_backends(embedded_policy) -> None:
    model, tokenizer = embedded_policy
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    greedy = SamplingParams(max_new_tokens=24, temperature=0.0)
    fast = FastBackend(model, tokenizer).chat(PROMPTS, greedy)
    reference = TransformersBackend(model, tokenizer, batch_size=1).chat(PROMPTS, greedy)
    assert fast == reference
    assert all(reply[0] for reply in fast)


@pytest.mark.slow
def test_real_policy_samples_n_candidates(embedded_policy) -> None:
    model, tokenizer = embedded_policy
    replies = FastBackend(model, tokenizer).chat(PROMPTS, SamplingParams(max_new_tokens=16, n=2, seed=0))
    assert [len(r) for r in replies] == [2, 2, 2]
    assert all(text.strip() for r in replies for text in r)
    assert "<|im_end|>" not in " ".join(text for r in replies for text in r)


@pytest.mark.slow
def test_real_embedder_encodes_similar_texts_closer() -> None:
    embedder = load_embedder(EMBEDDED_EMBEDDER)
    vectors = embedder.encode(["I love my dog", "My puppy is the best", "Quarterly tax filing deadline"])
    assert vectors.shape == (3, 384)
    similarity = embedder.similarity(vectors, vectors)
    assert similarity[0, 1] > similarity[0, 2]
