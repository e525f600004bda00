"""One small interface for every way the project samples chat replies.

Conversations are OpenAI-style lists of ``{"role", "content"}`` dicts (roles ``system``,
``user``, ``assistant``); a backend returns, for each conversation and in input order, a
list of ``params.n`` reply strings (the next assistant turn, stripped of surrounding
whitespace). Three backends exist:

* ``fast`` (:mod:`.fast_backend`): the laptop CPU default, a lean continuous-batching
  decode loop over a LLaMA-architecture HF folder.
* ``transformers`` (:mod:`.transformers_backend`): reference implementation on HF ``generate``.
* ``openai`` (:mod:`.openai_backend`): any OpenAI-compatible server (vLLM, llama.cpp server, ...).

The local backends share the helpers below so that their chat semantics (template, stop
tokens, post-processing) are identical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Message = Mapping[str, str]
Conversation = Sequence[Message]
CHAT_ROLES = frozenset({"system", "user", "assistant"})
BACKEND_KINDS = ("fast", "transformers", "openai")
# Tokens that end an assistant turn for common chat templates, when present in the vocabulary.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")


@dataclass(frozen=True)
class SamplingParams:
    """How replies are sampled. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 0.95
    n: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@runtime_checkable
class GenerationBackend(Protocol):
    name: str

    def chat(
        self, conversations: Sequence[Conversation], params: SamplingParams, progress: bool = False
    ) -> list[list[str]]:
        """One list of ``params.n`` replies per conversation, in input order."""
        ...


def validate_conversation(conversation: Conversation) -> list[dict[str, str]]:
    """Plain-dict copy of ``conversation``; ValueError on an empty one or a bad message."""
    if not conversation:
        raise ValueError("a conversation needs at least one message")
    checked: list[dict[str, str]] = []
    for message in conversation:
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES:
            raise ValueError(f"message role must be one of {sorted(CHAT_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"message content must be a string, got {type(content).__name__}")
        checked.append({"role": role, "content": content})
    return checked


def encode_conversations(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Conversation], generation_prompt: bool = True
) -> list[list[int]]:
    """Prompt token ids: the chat template with the assistant generation prompt appended. A
    conversation whose last message is an assistant *opening* (``"prefix": True``, Mistral's
    API convention) is continued instead (the template's ``continue_final_message``): the reply
    is forced to start with that text, which the backends leave out of the reply they return."""
    if not conversations:
        return []
    prompts = [_render(tokenizer, validate_conversation(c), generation_prompt,
                       continued=generation_prompt and ends_with_opening(c)) for c in conversations]
    # The template already contains any BOS/ChatML markers: add no special tokens twice.
    return [list(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]


def ends_with_opening(conversation: Conversation) -> bool:
    """Whether ``conversation`` ends with an assistant opening (``"prefix": True``) to continue."""
    return len(conversation) > 1 and conversation[-1].get("role") == "assistant" and bool(conversation[-1].get("prefix"))


def with_opening(conversation: Conversation, opening: str) -> list[dict[str, Any]]:
    """``conversation`` with an assistant opening the reply must continue."""
    return [*conversation, {"role": "assistant", "content": opening, "prefix": True}]


def _render(tokenizer: PreTrainedTokenizerBase, conversation: list[dict[str, str]], generation_prompt: bool,
            continued: bool) -> str:
    if continued:
        return tokenizer.apply_chat_template(conversation, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end a reply: the model's EOS ids plus known end-of-turn tokens."""
    ids: set[int] = set()
    for source in (model.generation_config.eos_token_id, model.config.eos_token_id, tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(i) for i in source)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return sorted(ids)


def decode_reply(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int], stop_ids: Sequence[int]) -> str:
    """Reply text from generated ids: cut at the first stop token, specials dropped, stripped."""
    stops = set(stop_ids)
    kept: list[int] = []
    for token in token_ids:
        if token in stops:
            break
        kept.append(int(token))
    return tokenizer.decode(kept, skip_special_tokens=True).strip()


# A reply that stops on one of these stopped on its own at a sentence's end (emoji included); one
# that does not, and used (nearly) its whole token budget, was cut off by the budget.
_CLEAN_ENDINGS = (".", "!", "?", "…", ")", '"', "'", "”", "’", "*", "~")


def ends_cleanly(reply: str) -> bool:
    """Whether ``reply`` ends at a sentence boundary (punctuation, a closing quote or an emoji)."""
    text = reply.rstrip()
    if not text:
        return False
    return text.endswith(_CLEAN_ENDINGS) or ord(text[-1]) >= 0x2600  # pictographs and emoji


_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)*~]*(?=\s)")


def trim_to_last_sentence(reply: str) -> str | None:
    """A cut-off reply up to the end of its last whole sentence (None: no sentence ended before the cut).

    The words after that end are the sentence the budget cut; what is left reads as finished."""
    ends = list(_SENTENCE_END.finditer(reply.rstrip()))
    return reply[: ends[-1].end()].strip() if ends else None


def reply_cut_off(backend: Any, replies: Sequence[str], max_new_tokens: int) -> list[bool]:
    """Per reply: was it cut off by the token budget (OpenAI's ``finish_reason == "length"``)?

    The backends return text only, so the finish reason is read back: a reply that re-tokenizes to
    (nearly) ``max_new_tokens`` tokens and does not end at a sentence boundary was cut. Without a
    tokenizer (a remote server) the length is estimated from words (~1.3 tokens a word)."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is not None and replies:
        lengths = [len(ids) for ids in tokenizer(list(replies), add_special_tokens=False)["input_ids"]]
    else:
        lengths = [int(1.3 * len(reply.split())) for reply in replies]
    return [length >= max_new_tokens - 2 and not ends_cleanly(reply) for reply, length in zip(replies, lengths)]
