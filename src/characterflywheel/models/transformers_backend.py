"""The ``transformers`` generation backend: the reference path on HF ``generate``.

Slower than the ``fast`` backend on CPU but works for every causal LM ``transformers``
supports (and on GPU if the model was placed there). Prompts are chat-templated, sorted by
length into batches of ``batch_size`` sequences (``batch_size // n`` prompts, each with
``num_return_sequences=n``), left-padded, and decoded with the same stop tokens and
post-processing as the fast backend. A ``seed`` makes sampling reproducible without
disturbing the global torch RNG (``torch.random.fork_rng``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig

from characterflywheel.models.generation import (
    Conversation,
    SamplingParams,
    decode_reply,
    encode_conversations,
    stop_token_ids,
)
from characterflywheel.models.loading import load_policy
from characterflywheel.models.progress import progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.generated_tokens = 0  # running total, stop tokens included (for throughput figures)
        self.batch_size = batch_size
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]

    @classmethod
    def from_spec(
        cls, model: str | Path, dtype: torch.dtype = torch.float32, batch_size: int = 16
    ) -> TransformersBackend:
        policy, tokenizer = load_policy(model, dtype=dtype)
        return cls(policy, tokenizer, batch_size=batch_size)

    def chat(
        self, conversations: Sequence[Conversation], params: SamplingParams, progress: bool = False
    ) -> list[list[str]]:
        prompts = encode_conversations(self.tokenizer, conversations)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        per_batch = max(1, self.batch_size // params.n)
        replies: list[list[str]] = [[] for _ in prompts]
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with progress_bar(len(prompts) * params.n, "transformers generation", progress) as bar:
                for start in range(0, len(order), per_batch):
                    batch = order[start : start + per_batch]
                    outputs = self._generate([prompts[i] for i in batch], params)
                    for position, index in enumerate(batch):
                        replies[index] = outputs[position * params.n : (position + 1) * params.n]
                    bar.update(len(batch) * params.n)
        return replies

    def _generate(self, prompts: list[list[int]], params: SamplingParams) -> list[str]:
        input_ids, attention_mask = _left_pad(prompts, self.pad_id, self.model.device)
        output = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=self._generation_config(params)
        )
        new_tokens = output[:, input_ids.shape[1] :].tolist()
        self.generated_tokens += sum(_length_with_stop(ids, self.stop_ids) for ids in new_tokens)
        return [decode_reply(self.tokenizer, ids, self.stop_ids) for ids in new_tokens]


    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        """Exactly the requested sampling: no inherited top-k (HF's default is 50) or penalties."""
        sampling: dict[str, object] = {"do_sample": False}
        if not params.greedy:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
        return GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            **sampling,
        )


def _left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
        attention_mask[row, width - len(prompt) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _length_with_stop(token_ids: list[int], stop_ids: list[int]) -> int:
    """Tokens really generated: up to and including the first stop token (the rest is padding)."""
    for position, token in enumerate(token_ids):
        if token in stop_ids:
            return position + 1
    return len(token_ids)
