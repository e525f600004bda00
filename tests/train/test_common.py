"""TRL's fused LM head, told to score only labelled positions on the CPU, returns what full logits give."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from trl.trainer import utils as trl_utils
from trl.trainer.utils import add_fused_lm_head

from characterflywheel.train.common import score_only_labelled_positions


def _tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config)


def test_only_labelled_positions_are_projected_and_the_log_probs_match_full_logits(monkeypatch):
    score_only_labelled_positions()
    score_only_labelled_positions()  # idempotent
    assert trl_utils._use_triton(torch.device("cpu")) is True

    model = _tiny_llama()
    reference = _tiny_llama()
    add_fused_lm_head(model)
    input_ids = torch.randint(0, 97, (2, 12))
    labels = input_ids.clone()
    labels[:, :8] = -100  # a prompt: no label, as in SFT's completion-only loss and DPO
    labels[1, 8:10] = -100

    projected = []
    original = trl_utils._ChunkedLogProbFunction.apply

    def counting_apply(hidden, *args):
        projected.append(hidden.shape[0])
        return original(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting_apply)
    fused = model(input_ids=input_ids, labels=labels, fused_lm_head=True).log_probs
    assert projected == [int((labels[:, 1:] != -100).sum())]  # 4 + 2 positions, not 2 x 11

    full = torch.log_softmax(reference(input_ids=input_ids).logits[:, :-1].float(), dim=-1)
    shifted = labels[:, 1:]
    expected = full.gather(-1, shifted.clamp(min=0).unsqueeze(-1)).squeeze(-1).masked_fill(shifted == -100, 0.0)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)

    fused.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(model.model.layers[0].mlp.up_proj.weight.grad,
                               reference.model.layers[0].mlp.up_proj.weight.grad, atol=1e-5, rtol=1e-4)
