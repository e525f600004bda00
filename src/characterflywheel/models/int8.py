"""Int8 projections (W8A8) for the fast backend on CPUs without native bf16.

Why: on a 2-core Intel Xeon (Ice Lake-SP, AVX-512 with VNNI, no AVX512-BF16) an fp32 matmul of the
shape a decode step makes (576 x 3,072, SmolLM2-135M) runs at 50-190 GFLOP/s, worst at the 8-32 rows a
served arm decodes at once, bf16 (emulated) at ~50, and an int8 one (``torch._int_mm``, oneDNN's VNNI
kernels) at 350-600: per call, quantisation and smoothing included, 509 -> 213 us at 8 rows, 1,902 -> 408
at 24, 1,588 -> 650 at 64 (``benchmarks/generation.py --projections``). Such hosts otherwise run the demo
in fp32, at about twice the bf16 EPYC's time.

Scheme: weights int8 per output channel, activations int8 per row (token), scales computed on each
call, int32 accumulation, output in fp32. Per-row scales alone lose too much on this model (teacher-
forced top-1 agreement with fp32 0.83, KL 0.052 nats a token; per-tensor scales, PyTorch's dynamic
quantisation, 0.52 and 0.98), because a few activation channels carry outliers. SmoothQuant (Xiao et al.,
2023) moves them into the weights: input channel ``j`` is divided by
``s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)`` and the weight column multiplied by it, with
``max|X_j|`` read once from a few calibration conversations (:data:`CALIBRATION_CONVERSATIONS`;
calibrating on 100 real chit-chat conversations instead gave the same agreement). With ``alpha`` 0.5:
top-1 0.95, KL 0.012-0.013 (48 chit-chat conversations, ~5,000 positions; bf16 projections: 0.995,
0.0004); in the backend's own forward, where the fused q/k/v and gate/up share one smoothing, 0.88 and
0.018. Embeddings, norms, attention and the LM head stay fp32, so sampling reads fp32 logits of
int8-projected hidden states; the KV cache is kept bf16 (``LeanLlama.cache_dtype``: decode attention is
bound by memory there).

Why our own: PyTorch's dynamic quantisation (``torch.ao``) is per-tensor (above) and deprecated;
torchao 0.18's ``Int8DynamicActivationInt8WeightConfig`` is per-row like this one but, eager on the CPU,
slower than fp32 (64 rows: 2,146 against 1,564 us a call), and it has no smoothing for an eager model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from characterflywheel.models.generation import encode_conversations

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOOTHING_ALPHA = 0.5

# Generic chat with a character card in front: enough to find the channels that carry outliers (they
# are the model's, not the text's); the run's own prompts are not needed.
CALIBRATION_CONVERSATIONS: tuple[tuple[tuple[str, str], ...], ...] = tuple(
    (("system", "You are Robin, a warm and curious friend. Keep your replies short, casual and engaging."),
     ("user", user), ("assistant", assistant))
    for user, assistant in (
        ("hey! how was your weekend?", "Pretty good! I went hiking and saw a deer. How about yours?"),
        ("i just got back from a run and i'm exhausted lol", "Nice work! How far did you go today?"),
        ("what kind of music are you into these days?", "Lots of old jazz lately. What are you listening to?"),
        ("my cat knocked my coffee off the table again", "Oh no, classic cat move! Is the mug okay?"),
        ("do you think it's weird to eat cereal for dinner?", "Not at all, cereal is great any time. Which kind?"),
        ("i can't decide whether to learn guitar or piano", "Both are fun! What music do you want to play?"),
        ("ugh mondays. how are you holding up?", "Hanging in there, coffee helps. What's on your plate today?"),
        ("have you seen any good movies lately?", "I loved a quiet indie film last week. Any favourites?"),
    )
)


class Int8Linear(nn.Module):
    """``linear`` as a W8A8 projection (see module docstring); ``input_maxima`` [in_features], the
    largest absolute input of each channel seen in calibration, turns on SmoothQuant."""

    def __init__(self, linear: nn.Linear, input_maxima: torch.Tensor | None = None,
                 alpha: float = SMOOTHING_ALPHA) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        self.inverse_smoothing: torch.Tensor | None = None
        if input_maxima is not None:
            smoothing = (input_maxima.float().clamp_min(1e-5) ** alpha
                         / weight.abs().amax(dim=0).clamp_min(1e-5) ** (1 - alpha))
            weight = weight * smoothing
            self.inverse_smoothing = 1.0 / smoothing
        self.weight_scale = weight.abs().amax(dim=1).clamp_min(1e-8) / 127
        # [in, out] as a transposed view: oneDNN's int8 kernel reads the weight column-major
        self.weight_t = torch.round(weight / self.weight_scale[:, None]).to(torch.int8).t()
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if self.inverse_smoothing is not None:
            rows = rows * self.inverse_smoothing
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(1e-8).div_(127)
        quantized = torch.round(rows / scale).to(torch.int8)
        out = torch._int_mm(quantized, self.weight_t).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features)


def calibrate_input_maxima(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, layer_parts: Sequence[str],
    conversations: Iterable[Sequence[tuple[str, str]]] = CALIBRATION_CONVERSATIONS,
) -> list[dict[str, torch.Tensor]]:
    """For every decoder layer, the largest absolute input of each channel of the modules named
    ``layer_parts`` (dotted paths inside a layer, e.g. ``self_attn.q_proj``) over ``conversations``."""
    maxima: list[dict[str, torch.Tensor]] = [{} for _ in model.model.layers]
    hooks = []
    for index, layer in enumerate(model.model.layers):
        for part in layer_parts:
            def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: object,
                       seen: dict[str, torch.Tensor] = maxima[index], part: str = part) -> None:
                rows = inputs[0].detach().float().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0)
                seen[part] = rows if part not in seen else torch.maximum(seen[part], rows)
            hooks.append(layer.get_submodule(part).register_forward_hook(record))
    chats = [[{"role": role, "content": content} for role, content in conversation] for conversation in conversations]
    try:
        with torch.inference_mode():
            for ids in encode_conversations(tokenizer, chats, generation_prompt=False):
                model(input_ids=torch.tensor([ids]))
    finally:
        for hook in hooks:
            hook.remove()
    return maxima
