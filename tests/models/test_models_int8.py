"""Int8 projections: W8A8 with per-row activation scales, SmoothQuant for outlier channels, and the
real model's logits with them against fp32."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from characterflywheel.models import SamplingParams
from characterflywheel.models.fast_backend import FastBackend
from characterflywheel.models.int8 import Int8Linear, calibrate_input_maxima
from characterflywheel.models.lean_llama import PROJECTION_INPUTS, LeanLlama, SlotCache


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).detach().norm() / want.detach().norm())


def test_int8_linear_tracks_the_float_one_and_smoothing_tames_an_outlier_channel() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(32, 48)
    inputs = torch.randn(2, 10, 32)
    assert relative_error(Int8Linear(linear)(inputs), linear(inputs)) < 0.02

    inputs[..., 3] *= 60  # one channel carrying outliers, as LLM activations do
    want = linear(inputs)
    plain = relative_error(Int8Linear(linear)(inputs), want)
    maxima = inputs.abs().reshape(-1, 32).amax(dim=0)
    smoothed = relative_error(Int8Linear(linear, maxima)(inputs), want)
    assert smoothed < plain / 2
    assert smoothed < 0.03
    assert Int8Linear(linear, maxima)(inputs).shape == (2, 10, 48)


def _prefill_logits(lean: LeanLlama, ids: torch.Tensor) -> torch.Tensor:
    cache = SlotCache(lean.shape, 1, ids.shape[1], lean.cache_dtype)
    lean.ensure_positions(ids.shape[1])
    with torch.inference_mode():
        return lean.logits(lean.prefill(ids, cache, torch.tensor([0])))[0]


def test_real_policy_int8_logits_agree_with_fp32(embedded_policy) -> None:
    model, tokenizer = embedded_policy
    conversation = [
        {"role": "system", "content": "You are Juno, a cheerful baker who loves puns. Always end with a question."},
        {"role": "user", "content": "i tried making sourdough this weekend and it came out flat as a pancake"},
        {"role": "assistant", "content": "Oh no! Flat bread happens to the best of us. Was your starter bubbly?"},
        {"role": "user", "content": "honestly no idea, it smelled kind of like vinegar. is that bad?"},
    ]
    ids = tokenizer.apply_chat_template(conversation, return_tensors="pt", return_dict=True)["input_ids"]
    reference = _prefill_logits(LeanLlama(model), ids).log_softmax(-1)
    maxima = calibrate_input_maxima(model, tokenizer, list(PROJECTION_INPUTS.values()))
    quantized = _prefill_logits(LeanLlama(model, maxima), ids).log_softmax(-1)
    agreement = (quantized.argmax(-1) == reference.argmax(-1)).float().mean().item()
    kl = F.kl_div(quantized, reference, log_target=True, reduction="batchmean").item()
    assert agreement >= 0.85, agreement
    assert kl < 0.05, kl
    # without smoothing the outlier channels cost far more
    plain = _prefill_logits(LeanLlama(model, [{k: None for k in m} for m in maxima]), ids).log_softmax(-1)
    assert F.kl_div(plain, reference, log_target=True, reduction="batchmean").item() > 2 * kl


def test_real_policy_int8_backend_answers(embedded_policy) -> None:
    model, tokenizer = embedded_policy
    backend = FastBackend(model, tokenizer, batch_size=4, int8=True)
    assert backend.lean.cache_dtype == torch.bfloat16 and backend.lean.dtype == torch.float32
    replies = backend.chat([[{"role": "user", "content": "hi! what's your favourite season?"}]],
                           SamplingParams(max_new_tokens=24, temperature=0.0, n=2))
    assert len(replies[0]) == 2 and replies[0][0] == replies[0][1]
    assert len(replies[0][0].split()) >= 3


def test_int8_backend_refuses_a_bf16_model(tiny_policy) -> None:
    model, tokenizer = tiny_policy
    with pytest.raises(ValueError, match="float32"):
        FastBackend(copy.deepcopy(model).to(torch.bfloat16), tokenizer, int8=True)
