"""Builders shared by the models tests: a tiny byte-level BPE tokenizer with the ChatML
template, and a small random LLaMA (fast enough to run every backend in milliseconds)."""

from __future__ import annotations

import torch

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHITCHAT = [
    "hey! how was your weekend?",
    "pretty good, went hiking with my dog. you?",
    "i just got back from a run and i'm exhausted lol",
    "what kind of music are you into these days?",
    "my cat knocked my coffee off the table again",
    "do you think it's weird to eat cereal for dinner?",
    "i can't decide whether to learn guitar or piano",
    "have you seen any good movies lately?",
    "You are Robin, a warm and curious friend. Keep replies short.",
]


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CHITCHAT * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def build_tiny_llama(vocab_size: int, seed: int = 0, **overrides: object):
    """A random LLaMA whose logits are peaked enough (large init) for stable greedy argmax."""
    from transformers import LlamaConfig, LlamaForCausalLM

    settings: dict[str, object] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.3,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
    )
    settings.update(overrides)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**settings)).eval()
    return model
