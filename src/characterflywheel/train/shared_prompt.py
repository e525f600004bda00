"""DPO pairs that run their shared prompt through the policy once, not once per reply.

TRL 1.16's DPOTrainer scores a batch of pairs as ``[chosen_1..chosen_b, rejected_1..rejected_b]``, each
row the whole prompt followed by one reply, so every prompt token goes through the policy twice (and
twice more for the reference log-probs), with the shorter reply padded. On the demo's rows the prompt
is most of the sequence (a character card plus history: ~190 of ~245 tokens), so half the forward,
backward and reference compute repeats work already done. TRL has no option for this (its
``padding_free`` is disabled for DPO in 1.16), hence this module.

``share_prompt_in_pairs(model)`` wraps the fused forward that TRL installs (``add_fused_lm_head``):
when a ``fused_lm_head=True`` call holds pairs whose two rows share their unlabelled prefix, each pair
becomes one packed row ``prompt + chosen + rejected`` with the rejected reply's positions restarting
after the prompt and a 4-D attention mask under which the rejected tokens see the prompt and
themselves, never the chosen reply. Each reply token is then predicted from exactly the context it had
in its own row, so the per-token log-probs, entropies and gradients are TRL's own up to float rounding
(``tests/train/test_shared_prompt.py``); they are scattered back into TRL's ``[2b, length - 1]``
layout and its loss and metrics run unchanged. Anything else (no labels, rows that are not such pairs,
attention other than SDPA or eager, scaled or soft-capped logits) goes to TRL's forward untouched.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch
from trl.kernels.chunked_logprob import OPTIONAL_OUTPUTS
from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE, FusedCausalLMOutput, _ChunkedLogProbFunction

IGNORE = -100


def share_prompt_in_pairs(model: torch.nn.Module) -> None:
    """Wrap ``model.forward`` (a causal LM already given TRL's fused LM head) so preference pairs share
    their prompt's forward. Idempotent."""
    fused_forward = model.forward
    if getattr(fused_forward, "shares_prompts", False):
        return

    @functools.wraps(type(model).forward)  # keep the signature: ``generate`` checks its kwargs against it
    def forward(self: torch.nn.Module, *args: Any, fused_lm_head: bool = False, labels: torch.Tensor | None = None,
                **kwargs: Any) -> Any:
        packed = (_packed_pairs(self, labels, kwargs) if fused_lm_head and labels is not None and not args
                  else None)
        if packed is None:
            return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)
        return packed

    forward.shares_prompts = True  # type: ignore[attr-defined]
    model.forward = types.MethodType(forward, model)


def _plain_logits(config: Any) -> bool:
    text = config.get_text_config()
    scaled = any(getattr(text, name, None) not in (None, 1.0)
                 for name in ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"))
    return not scaled and getattr(text, "final_logit_softcapping", None) is None


def _spans(labels: torch.Tensor) -> list[tuple[int, int]] | None:
    """(prompt length, reply length) per row, when each row's labels are one run after an unlabelled prefix."""
    spans = []
    for row in labels:
        labelled = (row != IGNORE).nonzero().flatten()
        if len(labelled) == 0:
            return None
        start, count = int(labelled[0]), len(labelled)
        if int(labelled[-1]) != start + count - 1 or start == 0:
            return None
        spans.append((start, count))
    return spans


def _packed_pairs(model: torch.nn.Module, labels: torch.Tensor, kwargs: dict[str, Any]) -> Any:
    kwargs = {key: value for key, value in kwargs.items() if value is not None}  # PEFT passes unset ones as None
    input_ids, attention_mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
    allowed = {"input_ids", "attention_mask", "use_cache", "return_dict"}
    if (input_ids is None or attention_mask is None or attention_mask.ndim != 2 or set(kwargs) - allowed
            or input_ids.size(0) % 2 or model.config._attn_implementation not in ("sdpa", "eager")
            or not _plain_logits(model.config)):
        return None
    spans = _spans(labels)
    pairs = input_ids.size(0) // 2
    if spans is None:
        return None
    rows, positions, masks = [], [], []
    for i in range(pairs):
        (prompt, chosen), (prompt_r, rejected) = spans[i], spans[i + pairs]
        if prompt != prompt_r or not torch.equal(input_ids[i, :prompt], input_ids[i + pairs, :prompt]):
            return None
        rows.append(torch.cat([input_ids[i, :prompt + chosen], input_ids[i + pairs, prompt:prompt + rejected]]))
        positions.append(torch.cat([torch.arange(prompt + chosen), torch.arange(prompt, prompt + rejected)]))
        length = prompt + chosen + rejected
        mask = torch.ones(length, length, dtype=torch.bool).tril()
        mask[prompt + chosen:, prompt:prompt + chosen] = False  # the rejected reply never sees the chosen one
        masks.append(mask)

    width = max(len(row) for row in rows)
    device = input_ids.device
    packed_ids = torch.zeros(pairs, width, dtype=input_ids.dtype, device=device)
    packed_positions = torch.zeros(pairs, width, dtype=torch.long, device=device)
    packed_mask = torch.eye(width, dtype=torch.bool, device=device).repeat(pairs, 1, 1)  # padding sees itself
    for i, (row, position, mask) in enumerate(zip(rows, positions, masks)):
        packed_ids[i, :len(row)] = row
        packed_positions[i, :len(row)] = position
        packed_mask[i, :len(row), :len(row)] = mask
    attention = packed_mask[:, None]
    if model.config._attn_implementation == "eager":
        attention = torch.zeros(attention.shape, dtype=model.dtype, device=device).masked_fill(
            ~attention, torch.finfo(model.dtype).min)

    hidden = model.base_model(input_ids=packed_ids, attention_mask=attention, position_ids=packed_positions,
                              use_cache=False).last_hidden_state

    # Each reply token's predictor: the packed position before it in its own row (the prompt's last
    # token for a reply's first token), and where it goes back in TRL's shifted [2b, length - 1] layout.
    # (packed row, predictor column, TRL row, TRL column) for every reply token
    index = []
    for i in range(pairs):
        (prompt, chosen), (_, rejected) = spans[i], spans[i + pairs]
        index += [(i, prompt - 1 + k, i, prompt - 1 + k) for k in range(chosen)]
        index += [(i, prompt - 1 if k == 0 else prompt + chosen + k - 1, i + pairs, prompt - 1 + k)
                  for k in range(rejected)]
    source_row, source_col, target_row, target_col = torch.tensor(index, device=device).unbind(1)
    targets = input_ids[target_row, target_col + 1]
    head = model.get_output_embeddings()
    per_token = _ChunkedLogProbFunction.apply(
        hidden[source_row, source_col].to(head.weight.device), head.weight, head.bias, targets.to(head.weight.device),
        1.0, _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, ("log_probs", *OPTIONAL_OUTPUTS))

    shape = (input_ids.size(0), input_ids.size(1) - 1)
    where = (target_row, target_col)
    fields = []
    for values in per_token:
        if values is None:
            fields.append(None)
            continue
        fields.append(values.new_zeros(shape).index_put(where, values))
    log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = fields
    label_mask = labels[:, 1:] != IGNORE
    return FusedCausalLMOutput(
        loss=-log_probs.sum() / label_mask.sum().clamp(min=1), log_probs=log_probs, entropy=entropy,
        log_sum_sq_probs=log_sum_sq_probs, mean_logits=mean_logits, is_top1=is_top1, label_mask=label_mask,
        aux_loss=None)
