"""Preference pairs packed around their shared prompt give TRL's per-token log-probs and gradients."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import add_fused_lm_head

from characterflywheel.train import shared_prompt
from characterflywheel.train.shared_prompt import share_prompt_in_pairs

PAIRS = [  # prompt ids, chosen ids, rejected ids: replies of different lengths, prompts of different lengths
    {"prompt_ids": [5, 6, 7, 8, 9, 10], "chosen_ids": [11, 12, 13], "rejected_ids": [14, 15, 16, 17, 18]},
    {"prompt_ids": [20, 21, 22], "chosen_ids": [23, 24, 25, 26], "rejected_ids": [27]},
]


def _tiny_llama(attention: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         attn_implementation=attention)
    return LlamaForCausalLM(config)


def _batch() -> dict[str, torch.Tensor]:
    batch = DataCollatorForPreference(pad_token_id=0)(PAIRS)
    batch["labels"] = batch["input_ids"].masked_fill(batch.pop("completion_mask") == 0, -100)
    return batch


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("lora", [False, True])
def test_packed_pairs_match_trl_s_fused_forward(monkeypatch, attention, lora):
    models = []
    for shared in (False, True):
        model = _tiny_llama(attention)
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
        if shared:
            share_prompt_in_pairs(model)
            share_prompt_in_pairs(model)  # idempotent
        if lora:
            torch.manual_seed(1)
            model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"],
                                                     init_lora_weights=False))
        models.append(model)
    packed_calls = []
    packed = shared_prompt._packed_pairs
    monkeypatch.setattr(shared_prompt, "_packed_pairs", lambda *a: packed_calls.append(packed(*a)) or packed_calls[-1])

    batch = _batch()
    plain, shared = (model(**batch, use_cache=False, fused_lm_head=True) for model in models)
    assert len(packed_calls) == 1 and packed_calls[0] is shared  # the packed path answered, not TRL's
    labelled = batch["labels"][:, 1:] != -100
    for field in ("log_probs", "entropy", "mean_logits"):
        torch.testing.assert_close(getattr(shared, field), getattr(plain, field), atol=1e-5, rtol=1e-4)
    assert torch.equal(shared.is_top1[labelled], plain.is_top1[labelled])
    assert (shared.log_probs[~labelled] == 0).all()

    weights = [torch.tensor([1.0, -2.0, 0.5, 3.0])[:, None] for _ in models]  # a DPO-like signed sum
    (plain.log_probs * weights[0]).sum().backward()
    (shared.log_probs * weights[1]).sum().backward()
    trained = [[p for p in model.parameters() if p.requires_grad] for model in models]
    assert len(trained[0]) == len(trained[1]) > 0
    for a, b in zip(*trained):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4)


def test_rows_that_are_not_pairs_sharing_a_prompt_go_to_trl():
    plain, wrapped = _tiny_llama("sdpa"), _tiny_llama("sdpa")
    for model in (plain, wrapped):
        add_fused_lm_head(model)
    share_prompt_in_pairs(wrapped)
    batch = _batch()
    batch["input_ids"][2, 0] = 63  # the first pair's rejected row has another prompt
    torch.testing.assert_close(wrapped(**batch, fused_lm_head=True).log_probs,
                               plain(**batch, fused_lm_head=True).log_probs)
    ids = batch["input_ids"]
    torch.testing.assert_close(wrapped(input_ids=ids).logits, plain(input_ids=ids).logits)  # generation's forward
