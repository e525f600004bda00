"""A lean inference-only forward pass for LLaMA-architecture models, with a slot KV cache.

Why not ``model.generate`` or ``model.forward``: on a 2-core CPU the dominant cost of
rollouts is decoding, and HF's per-step machinery (mask construction, cache objects,
logits processors, un-fused projections, logits for every position) costs a large share of
each step at the batch sizes that saturate the CPU. This module keeps the HF model's
weights (norms, o/down projections and embeddings are shared, not copied; q/k/v and
gate/up are fused into one matmul each), and runs a forward that:

* writes keys/values straight into a pre-allocated ``[slots, kv_heads, capacity, head_dim]``
  cache per layer, where every slot holds one sequence at positions ``0..len-1`` (prompts
  are right-padded, so no position offsets are needed and a finished slot can be refilled
  with a new prompt while the others keep decoding: continuous batching);
* computes logits only for the rows and positions that are sampled.

Assumptions (checked in :func:`check_llama_compatible`): pre-norm decoder layers with
``self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``, RMSNorm, rotary embeddings
from ``model.model.rotary_emb`` (any static RoPE type: default, linear, llama3, yarn),
no sliding window, no q/k norms. Projection biases (Qwen2-style) are supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from characterflywheel.models.int8 import Int8Linear

if TYPE_CHECKING:
    from transformers import PreTrainedModel

ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PARTS = ("gate_proj", "up_proj", "down_proj")


class IncompatibleModelError(ValueError):
    """The model is not a LLaMA-architecture causal LM the fast backend can run."""


def check_llama_compatible(model: PreTrainedModel) -> None:
    config = model.config
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None or not hasattr(decoder, "rotary_emb") or not hasattr(model, "lm_head"):
        raise IncompatibleModelError(
            f"{type(model).__name__} is not a LLaMA-style causal LM; use the transformers backend"
        )
    layer = layers[0]
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    if not all(hasattr(attention, p) for p in ATTENTION_PARTS) or not all(hasattr(mlp, p) for p in MLP_PARTS):
        raise IncompatibleModelError(f"{type(model).__name__} layers lack LLaMA projections")
    if hasattr(attention, "q_norm") or getattr(config, "sliding_window", None) and getattr(
        config, "use_sliding_window", True
    ):
        raise IncompatibleModelError(f"{config.model_type}: q/k norms or sliding windows are not supported")
    if getattr(config, "rope_parameters", {}).get("rope_type") == "dynamic":
        raise IncompatibleModelError("dynamic RoPE scaling is not supported; use the transformers backend")


@dataclass(frozen=True)
class Shape:
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    layers: int
    vocab: int
    eps: float


# The input each projection reads, named by the HF module whose input it is (calibration hooks it).
PROJECTION_INPUTS = {"qkv": "self_attn.q_proj", "o": "self_attn.o_proj", "gate_up": "mlp.gate_proj",
                     "down": "mlp.down_proj"}


class LeanLayer(nn.Module):
    def __init__(self, layer: nn.Module, int8_input_maxima: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        attention, mlp = layer.self_attn, layer.mlp
        self.qkv: nn.Module = _fused_linear([attention.q_proj, attention.k_proj, attention.v_proj])
        self.o: nn.Module = attention.o_proj
        self.gate_up: nn.Module = _fused_linear([mlp.gate_proj, mlp.up_proj])
        self.down: nn.Module = mlp.down_proj
        if int8_input_maxima is not None:
            for name, hooked in PROJECTION_INPUTS.items():
                setattr(self, name, Int8Linear(getattr(self, name), int8_input_maxima[hooked]))
        self.act = mlp.act_fn
        self.input_norm = layer.input_layernorm.weight
        self.post_norm = layer.post_attention_layernorm.weight

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(h).chunk(2, dim=-1)
        return self.down(self.act(gate).mul_(up))


def _fused_linear(parts: list[nn.Linear]) -> nn.Linear:
    has_bias = parts[0].bias is not None
    fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts), bias=has_bias)
    fused.weight = nn.Parameter(torch.cat([p.weight.detach() for p in parts]), requires_grad=False)
    if has_bias:
        fused.bias = nn.Parameter(torch.cat([p.bias.detach() for p in parts]), requires_grad=False)
    return fused.to(parts[0].weight.dtype)


class SlotCache:
    """Per-layer key/value tensors ``[slots, kv_heads, capacity, head_dim]``."""

    def __init__(self, shape: Shape, slots: int, capacity: int, dtype: torch.dtype) -> None:
        size = (slots, shape.kv_heads, capacity, shape.head_dim)
        self.keys = [torch.zeros(size, dtype=dtype) for _ in range(shape.layers)]
        self.values = [torch.zeros(size, dtype=dtype) for _ in range(shape.layers)]
        self.slots = slots
        self.capacity = capacity

    @staticmethod
    def bytes_per_token(shape: Shape, dtype: torch.dtype) -> int:
        return 2 * shape.layers * shape.kv_heads * shape.head_dim * torch.empty((), dtype=dtype).element_size()

    def copy_prefix(self, source: int, targets: torch.Tensor, length: int) -> None:
        """Duplicate slot ``source``'s first ``length`` positions into slots ``targets``."""
        for cache in (*self.keys, *self.values):
            cache[targets, :, :length] = cache[source, :, :length]

    def move_slots(self, sources: torch.Tensor, targets: torch.Tensor, length: int) -> None:
        """Copy slots ``sources`` (first ``length`` positions) into slots ``targets``."""
        for cache in (*self.keys, *self.values):
            cache[targets, :, :length] = cache[sources, :, :length]

    def read_prefix(self, slot: int, length: int) -> list[torch.Tensor]:
        """A copy of slot ``slot``'s first ``length`` positions: keys of every layer, then values."""
        return [cache[slot, :, :length].clone() for cache in (*self.keys, *self.values)]

    def read_range(self, slot: int, start: int, end: int) -> list[torch.Tensor]:
        """A copy of slot ``slot``'s positions ``start..end-1``, laid out as ``read_prefix``'s."""
        return [cache[slot, :, start:end].clone() for cache in (*self.keys, *self.values)]

    def write_prefix(self, slot: int, stored: list[torch.Tensor]) -> None:
        """Put a ``read_prefix`` copy back at positions ``0..`` of slot ``slot``."""
        for cache, part in zip((*self.keys, *self.values), stored, strict=True):
            cache[slot, :, : part.shape[1]] = part

    def take_from(self, other: SlotCache, slots: int, length: int) -> None:
        """Copy ``other``'s first ``slots`` slots (first ``length`` positions) into this cache."""
        for mine, theirs in zip((*self.keys, *self.values), (*other.keys, *other.values), strict=True):
            mine[:slots, :, :length] = theirs[:slots, :, :length]


class LeanLlama(nn.Module):
    """Inference-only view of a LLaMA model (see module docstring). With ``int8_input_maxima`` (one
    dict a layer, keyed by :data:`PROJECTION_INPUTS`' values: ``int8.calibrate_input_maxima``) the
    decoder layers' projections run int8 (:mod:`characterflywheel.models.int8`)."""

    def __init__(self, model: PreTrainedModel, int8_input_maxima: list[dict[str, torch.Tensor]] | None = None) -> None:
        super().__init__()
        check_llama_compatible(model)
        config = model.config
        attention = model.model.layers[0].self_attn
        self.shape = Shape(
            heads=config.num_attention_heads,
            kv_heads=config.num_key_value_heads,
            head_dim=attention.head_dim,
            hidden=config.hidden_size,
            layers=len(model.model.layers),
            vocab=model.lm_head.out_features,
            eps=float(config.rms_norm_eps),
        )
        self.embed = model.get_input_embeddings().weight
        maxima = int8_input_maxima or [None] * len(model.model.layers)
        self.layers = nn.ModuleList(LeanLayer(layer, seen)
                                    for layer, seen in zip(model.model.layers, maxima, strict=True))
        self.final_norm = model.model.norm.weight
        self.lm_head = model.lm_head
        self.rotary = model.model.rotary_emb
        self.dtype = self.embed.dtype
        # Where the projections run int8 (a CPU without native bf16), the KV cache is kept bf16: decode
        # attention reads the whole cache every step and is bound by memory, so half the bytes run it
        # 1.2-1.6x as fast there, even with bf16 emulated (64 slots, 400-800 positions), at half the memory.
        self.cache_dtype = torch.bfloat16 if int8_input_maxima is not None else self.dtype
        self._cos = self._sin = torch.empty(0)

    # -- rotary tables -------------------------------------------------------------------
    def ensure_positions(self, count: int) -> None:
        """Precompute cos/sin tables for positions ``0..count-1``."""
        if self._cos.shape[0] >= count:
            return
        positions = torch.arange(count)[None, :]
        cos, sin = self.rotary(self.embed[:1][None], positions)
        half = cos.shape[-1] // 2
        # rotate_half(x) * sin == swap_halves(x) * signed_sin (see _rotate)
        signed_sin = torch.cat((-sin[0, :, :half], sin[0, :, half:]), dim=-1)
        self._cos, self._sin = cos[0].to(self.dtype), signed_sin.to(self.dtype)

    # -- forward passes -------------------------------------------------------------------
    def prefill(
        self, tokens: torch.Tensor, cache: SlotCache, slots: torch.Tensor, start: int = 0
    ) -> torch.Tensor:
        """Run right-padded prompt pieces ``tokens`` [P, L] at positions ``start..start+L-1``
        of cache ``slots`` (positions ``0..start-1`` must already be cached there, e.g. a
        shared system prompt); returns hidden states [P, L, D] (final norm not applied)."""
        prompts, length = tokens.shape
        return self.prefill_rows(tokens, torch.full((prompts,), length), cache, slots, torch.full((prompts,), start))

    def prefill_rows(
        self, tokens: torch.Tensor, lengths: torch.Tensor, cache: SlotCache, slots: torch.Tensor, starts: torch.Tensor
    ) -> torch.Tensor:
        """``prefill`` with a start position per row: row ``r``'s first ``lengths[r]`` tokens go to
        positions ``starts[r]..`` of slot ``slots[r]`` (positions ``0..starts[r]-1`` must already be
        cached there, e.g. a system prompt restored from a prefix cache); padding is not cached."""
        prompts, length = tokens.shape
        positions = starts[:, None] + torch.arange(length)[None, :]
        real = torch.arange(length)[None, :] < lengths[:, None]
        span = int((starts + lengths).max())
        in_table = positions.clamp(max=self._cos.shape[0] - 1)
        cos, sin = self._cos[in_table][:, None], self._sin[in_table][:, None]
        # Row r's query i sees keys 0..starts[r]+i.
        visible = (torch.arange(span)[None, None, :] <= positions[:, :, None])[:, None]
        rows, columns = slots[:, None].expand(prompts, length)[real], positions[real]
        x = F.embedding(tokens, self.embed)
        for index, layer in enumerate(self.layers):
            h = F.rms_norm(x, (self.shape.hidden,), layer.input_norm, self.shape.eps)
            q, k, v = self._project_qkv(layer, h, prompts, length)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            keys, values = cache.keys[index], cache.values[index]
            keys[rows, :, columns] = k.transpose(1, 2)[real].to(self.cache_dtype)
            values[rows, :, columns] = v.transpose(1, 2)[real].to(self.cache_dtype)
            # prefill attention is bound by compute, which emulated bf16 would slow: read the cache in self.dtype
            attended = F.scaled_dot_product_attention(q, keys[slots, :, :span].to(self.dtype),
                                                      values[slots, :, :span].to(self.dtype), attn_mask=visible,
                                                      enable_gqa=True)
            x.add_(layer.o(attended.transpose(1, 2).reshape(prompts, length, -1)))
            x.add_(layer.mlp(F.rms_norm(x, (self.shape.hidden,), layer.post_norm, self.shape.eps)))
        return x

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: SlotCache) -> torch.Tensor:
        """One step for cache slots ``0..S-1``: token ``tokens[s]`` goes to position
        ``positions[s]`` of slot ``s``; returns hidden states [S, D]."""
        slots = tokens.shape[0]
        rows = torch.arange(slots)
        span = int(positions.max()) + 1
        cos, sin = self._cos[positions][:, None, None], self._sin[positions][:, None, None]
        bias = torch.zeros(slots, 1, 1, span, dtype=self.cache_dtype).masked_fill_(
            torch.arange(span)[None, None, None, :] > positions[:, None, None, None], float("-inf")
        )
        x = F.embedding(tokens, self.embed)
        for index, layer in enumerate(self.layers):
            h = F.rms_norm(x, (self.shape.hidden,), layer.input_norm, self.shape.eps)
            q, k, v = self._project_qkv(layer, h[:, None], slots, 1)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            keys, values = cache.keys[index], cache.values[index]
            keys[rows, :, positions] = k[:, :, 0].to(self.cache_dtype)
            values[rows, :, positions] = v[:, :, 0].to(self.cache_dtype)
            attended = self._decode_attention(q.to(self.cache_dtype), keys[:slots, :, :span],
                                              values[:slots, :, :span], bias)
            x.add_(layer.o(attended.to(self.dtype)))
            x.add_(layer.mlp(F.rms_norm(x, (self.shape.hidden,), layer.post_norm, self.shape.eps)))
        return x

    def _decode_attention(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """Single-query grouped attention [S, H, 1, hd] -> [S, H * hd]. The query heads that share a
        key/value head are passed to SDPA as that head's query rows, so the cache is read once per
        key/value head and never repeated, and SDPA's CPU kernel gets several rows at a time: 2.5-3x
        faster than a written-out matmul and softmax at 200-1,200 cached positions (bf16, 32 slots;
        ``benchmarks/decode_attention.py``)."""
        slots, shape = q.shape[0], self.shape
        grouped = q.reshape(slots, shape.kv_heads, shape.heads // shape.kv_heads, shape.head_dim)
        return F.scaled_dot_product_attention(grouped, keys, values, attn_mask=bias).reshape(slots, -1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(F.rms_norm(hidden, (self.shape.hidden,), self.final_norm, self.shape.eps)).float()

    def _project_qkv(
        self, layer: LeanLayer, h: torch.Tensor, batch: int, length: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shape = self.shape
        qkv = layer.qkv(h)
        q, k, v = qkv.split(
            [shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.kv_heads * shape.head_dim], dim=-1
        )
        q = q.view(batch, length, shape.heads, shape.head_dim).transpose(1, 2)
        k = k.view(batch, length, shape.kv_heads, shape.head_dim).transpose(1, 2)
        v = v.view(batch, length, shape.kv_heads, shape.head_dim).transpose(1, 2)
        return q, k, v


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE as in HF LLaMA (``x * cos + rotate_half(x) * sin``), with the sign folded into
    ``signed_sin`` so the rotation is one swap of halves and a fused multiply-add."""
    half = x.shape[-1] // 2
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return torch.addcmul(x * cos, swapped, signed_sin)
