"""Backbones and saved reward-model folders.

A reward model is an ``AutoModelForSequenceClassification`` (BERT-style encoders get a fresh
linear head on the pooled [CLS]; causal LMs such as SmolLM2 get a value head on the last
non-padding token) plus a ``reward_config.json`` next to its weights and tokenizer::

    {"kind": "pointwise" | "pairwise" | "user_signal", "style": "pair" | "segments" | "chat",
     "input": {max_length, history_messages, system_chars, reply_share}, "backbone": spec,
     "normalisation": {"mean", "std"} (pointwise), "thresholds": [4 floats] (pointwise, ordinal),
     "heads": [...] (user_signal)}

``style = "pair"``: the encoder pair encoding of ``inputs.encode_batch``; ``style = "segments"``: each
part encoded on its own (``inputs.encode_segments``). ``style = "chat"``: the
causal LM reads the chat template of (cut system prompt, last history messages, the reply as an
assistant turn), tokenised exactly like TRL's RewardTrainer does, cut from the left to max_length.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json
from characterflywheel.models import resolve_model
from characterflywheel.models.progress import show_bars
from characterflywheel.reward.inputs import (
    CONTEXT_SEGMENTS,
    ChatMessages,
    InputFormat,
    encode_batch,
    encode_segments,
)

HEAD_NAME = "reward_head.safetensors"
STYLES = ("pair", "segments", "chat")
# Cosines enter the head scaled as in sentence-transformers' ranking losses (scale 20): a reply's
# cosines to its context differ by ~0.1 between candidates, too little for a fresh head to use unscaled.
SIMILARITY_SCALE = 20.0
FROZEN_CACHE_ROWS = 200_000  # pooled rows kept per encoder (384 floats each) before the cache starts over


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("reward.device: cuda was asked for but torch sees no GPU")
    return torch.device(device)


def is_causal_lm(folder: Path) -> bool:
    """True when the folder's config names a ``...ForCausalLM`` architecture."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or [])


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence the expected 'newly initialized head' warnings while a backbone gets its head."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def mean_pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L2-normalised mean of the hidden states where ``mask`` (batch x tokens, bool) is set."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0), dim=-1)


class SegmentPooledClassifier(torch.nn.Module):
    """Encoder + a linear head on pooled segment embeddings (the encoder-backbone reward models).

    Two inputs (``inputs.py``). *Joint* (``style = "pair"``): one encoding ``[CLS] history [SEP]
    reply [SEP]`` (pairwise: ``... reply A [SEP] reply B [SEP]``), so every token attends to the
    history and the other reply; tokens are assigned to segments by counting [SEP]s. *Segments*
    (``style = "segments"``): persona, earlier turns, last user line and each reply encoded on their
    own, the batch's ``segment_index`` naming each example's rows. Either way each segment is
    mean-pooled and L2-normalised (as the sentence-transformers MiniLM was trained: mean pooling,
    not [CLS]), and the head reads ``[c_1..c_C, r_1..r_K, r_k * c_j and cos(r_k, c_j) for every reply
    and context segment]``: the products let a linear head see reply/context similarity from the first step,
    which a fresh [CLS] pooler cannot; encoded on their own, they start as exactly the sentence
    similarities MiniLM was trained for (relevance to the last line, fit to the persona). This is
    why it replaces ``AutoModelForSequenceClassification`` for encoders: it learns from a few
    hundred examples in a few CPU epochs. Saved as the encoder's HF folder plus
    ``reward_head.safetensors``; a frozen encoder is not saved, the config names the backbone.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int, segments: int, sep_token_id: int,
                 context_segments: int = 1, frozen_rows: dict[bytes, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.segments = segments
        self.context_segments = context_segments
        self.sep_token_id = sep_token_id
        self.num_labels = num_labels
        replies = segments - context_segments
        hidden = encoder.config.hidden_size
        pairs = replies * context_segments
        self.head = torch.nn.Linear(hidden * (segments + pairs) + pairs, num_labels)
        # Pooled rows of a frozen encoder by token ids; shared by the models that share the encoder.
        self._frozen_rows: dict[bytes, torch.Tensor] = {} if frozen_rows is None else frozen_rows

    @property
    def base_model(self) -> PreTrainedModel:
        return self.encoder

    def encoder_frozen(self) -> bool:
        return not any(parameter.requires_grad for parameter in self.encoder.parameters())

    def train(self, mode: bool = True) -> SegmentPooledClassifier:
        """A frozen encoder is a fixed feature extractor: it stays in eval mode (no dropout)."""
        super().train(mode)
        if self.encoder_frozen():
            self.encoder.eval()
        return self

    def _pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return mean_pooled(hidden, attention_mask.bool())

    def _segment_rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Pooled rows of separately encoded segments; with a frozen encoder each distinct text is encoded
        once per model and then looked up (the epochs of a head-only training run re-read the same texts)."""
        if not self.encoder_frozen():
            return self._pool(input_ids, attention_mask, **kwargs)
        lengths = attention_mask.sum(1).tolist()
        keys = [input_ids[i, :n].cpu().numpy().tobytes() for i, n in enumerate(lengths)]
        missing = [i for i, key in enumerate(keys) if key not in self._frozen_rows]
        if missing:
            if len(self._frozen_rows) > FROZEN_CACHE_ROWS:
                self._frozen_rows.clear()
            width = max(lengths[i] for i in missing)
            chosen = torch.tensor(missing, device=input_ids.device)
            with torch.no_grad():
                fresh = self._pool(input_ids[chosen, :width], attention_mask[chosen, :width],
                                   **{k: v[chosen, :width] for k, v in kwargs.items() if torch.is_tensor(v)})
            for i, row in zip(missing, fresh, strict=True):
                self._frozen_rows[keys[i]] = row
        return torch.stack([self._frozen_rows[key] for key in keys])

    @property
    def config(self) -> Any:
        return self.encoder.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                segment_index: torch.Tensor | None = None, **kwargs: Any) -> Any:
        if segment_index is not None:
            rows = self._segment_rows(input_ids, attention_mask, **kwargs)
            pooled = [rows[segment_index[:, index]] for index in range(self.segments)]
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
            is_sep = (input_ids == self.sep_token_id).long()
            segment = torch.cumsum(is_sep, dim=1) - is_sep  # a [SEP] closes its own segment
            pooled = [mean_pooled(hidden, (segment == index) & attention_mask.bool()) for index in range(self.segments)]
        contexts, replies = pooled[: self.context_segments], pooled[self.context_segments:]
        products = [reply * context for reply in replies for context in contexts]
        cosines = SIMILARITY_SCALE * torch.stack([product.sum(-1) for product in products], dim=-1)
        features = torch.cat([*pooled, *products, cosines], dim=-1)
        return SimpleNamespace(logits=self.head(features))


def load_backbone(spec: str | Path, num_labels: int, seed: int, replies: int = 1,
                  style: str = "pair") -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """A reward model with a freshly (seeded) initialised head, and its tokenizer: a causal LM gets
    ``AutoModelForSequenceClassification`` (value head on the last token), an encoder gets a
    ``SegmentPooledClassifier`` over the context segments of ``style`` + ``replies`` reply segments."""
    folder = resolve_model(spec)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(folder))
    torch.manual_seed(seed)
    with quiet_transformers():
        if is_causal_lm(folder):
            model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels,
                                                                       dtype=torch.float32)
            model.config.pad_token_id = tokenizer.pad_token_id
            return model, tokenizer
        encoder = AutoModel.from_pretrained(folder, dtype=torch.float32, add_pooling_layer=False)
    if tokenizer.sep_token_id is None:
        raise ValueError(f"{folder}: an encoder backbone needs a tokenizer with a [SEP] token")
    contexts = CONTEXT_SEGMENTS if style == "segments" else 1
    return SegmentPooledClassifier(encoder, num_labels, contexts + replies, tokenizer.sep_token_id,
                                   contexts), tokenizer


def freeze_lower_layers(model: PreTrainedModel, trainable_layers: int | None) -> int:
    """Freeze everything below the top ``trainable_layers`` transformer blocks (None: train all): the
    embeddings with their norm, and the lower blocks; the head, and any pooler or final norm after
    the blocks, stay trainable. On a CPU this skips most of the backward pass (with 0 blocks, all
    of it). Returns the number of trainable parameters."""
    if trainable_layers is not None:
        base = model.base_model
        blocks = next((m for m in base.modules() if isinstance(m, torch.nn.ModuleList)
                       and len(m) == model.config.num_hidden_layers), None)
        if blocks is None:
            raise ValueError(f"{type(model).__name__}: no list of {model.config.num_hidden_layers} layers to freeze")
        keep = {id(p) for block in list(blocks)[len(blocks) - trainable_layers:] for p in block.parameters()}
        block_ids = {id(p) for p in blocks.parameters()}
        below = True  # parameters are registered bottom-up: embeddings, blocks, then final norm / pooler
        for parameter in base.parameters():
            if id(parameter) in block_ids:
                below = False
            parameter.requires_grad_(id(parameter) in keep or (not below and id(parameter) not in block_ids))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def chat_messages(prompt: ChatMessages, reply: str, fmt: InputFormat) -> list[dict[str, str]]:
    system = next((m["content"] for m in prompt if m["role"] == "system"), "")
    turns = [dict(m) for m in prompt if m["role"] != "system"][-fmt.history_messages:]
    head = [{"role": "system", "content": system[: fmt.system_chars]}] if system and fmt.system_chars else []
    return head + turns + [{"role": "assistant", "content": reply}]


def encode_chat(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[ChatMessages], replies: Sequence[str],
                fmt: InputFormat) -> dict[str, Any]:
    texts = [tokenizer.apply_chat_template(chat_messages(p, r, fmt), tokenize=False)
             for p, r in zip(prompts, replies, strict=True)]
    tokenizer.truncation_side = "left"
    return tokenizer(texts, add_special_tokens=False, truncation=True, max_length=fmt.max_length,
                     padding=True, return_tensors="pt")


class SequenceModel:
    """A sequence-classification model with the input format it was trained on; returns logits."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, fmt: InputFormat,
                 style: str = "pair", device: torch.device | None = None, batch_size: int = 64) -> None:
        if style not in STYLES:
            raise ValueError(f"style: expected one of {', '.join(STYLES)}, got {style!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.style = style
        self.device = device or next(model.parameters()).device
        self.batch_size = batch_size

    def encode(self, prompts: Sequence[ChatMessages], reply_groups: Sequence[Sequence[str]]) -> dict[str, Any]:
        if self.style == "chat":
            if any(len(g) != 1 for g in reply_groups):
                raise ValueError("a chat-style reward model scores one reply at a time")
            batch = encode_chat(self.tokenizer, prompts, [g[0] for g in reply_groups], self.fmt)
        elif self.style == "segments":
            batch = encode_segments(self.tokenizer, prompts, reply_groups, self.fmt)
        else:
            batch = encode_batch(self.tokenizer, prompts, reply_groups, self.fmt)
        return {key: value.to(self.device) for key, value in batch.items()}

    def forward(self, prompts: Sequence[ChatMessages], reply_groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """Logits with gradients (training)."""
        return self.model(**self.encode(prompts, reply_groups)).logits

    def logits(self, prompts: Sequence[ChatMessages], reply_groups: Sequence[Sequence[str]],
               progress: bool = False, description: str = "scoring") -> np.ndarray:
        """Logits (n, num_labels) in eval mode, batched, without gradients; the train/eval mode is restored."""
        if len(prompts) != len(reply_groups):
            raise ValueError(f"{len(prompts)} prompts but {len(reply_groups)} replies")
        was_training = self.model.training
        self.model.eval()
        outputs = []
        starts = range(0, len(prompts), self.batch_size)
        if show_bars(progress):
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=description, unit="batch")
        try:
            with torch.inference_mode():
                for start in starts:
                    end = start + self.batch_size
                    outputs.append(self.forward(prompts[start:end], reply_groups[start:end]).float().cpu().numpy())
        finally:
            self.model.train(was_training)
        labels = getattr(self.model, "num_labels", None) or self.model.config.num_labels
        return np.concatenate(outputs) if outputs else np.zeros((0, labels), dtype=np.float32)


def save_folder(folder: Path, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                reward_config: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, SegmentPooledClassifier):
        # A frozen encoder is the backbone unchanged: the folder keeps only the head and names the
        # backbone (KBs instead of a ~90 MB encoder copy per model and generation).
        shared = model.encoder_frozen() and bool(reward_config.get("backbone"))
        if not shared:
            model.encoder.save_pretrained(folder)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
                  str(folder / HEAD_NAME))
        reward_config = reward_config | {"head": {"type": "segment_pooled", "num_labels": model.num_labels,
                                                  "segments": model.segments,
                                                  "context_segments": model.context_segments}
                                         | ({"encoder": str(reward_config["backbone"])} if shared else {})}
    else:
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_json(folder / artifacts.REWARD_CONFIG, reward_config)


_SHARED_ENCODERS: dict[tuple[str, str], tuple[PreTrainedModel, dict[bytes, torch.Tensor]]] = {}


def shared_frozen_encoder(source: Path, device: torch.device) -> tuple[PreTrainedModel, dict[bytes, torch.Tensor]]:
    """One frozen, eval-mode copy of a named backbone per process and device, with one cache of its pooled
    rows. The pointwise, pairwise and user-signal models all read the same frozen MiniLM: shared, a text
    that all three score (a candidate, a prompt's persona or last line) is encoded once, not once per
    model and per pair it appears in."""
    key = (str(Path(source).resolve()), str(device))
    if key not in _SHARED_ENCODERS:
        encoder = AutoModel.from_pretrained(source, dtype=torch.float32, add_pooling_layer=False)
        encoder.requires_grad_(False)
        _SHARED_ENCODERS[key] = (encoder.to(device).eval(), {})
    return _SHARED_ENCODERS[key]


def load_folder(path: Path | str, kind: str, device: str = "auto",
                batch_size: int = 64) -> tuple[SequenceModel, dict[str, Any]]:
    """A saved reward model of ``kind``, in eval mode; a wrong folder is a one-line error."""
    folder = Path(path)
    config_file = folder / artifacts.REWARD_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: not found (not a reward-model folder)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("kind") != kind:
        raise ValueError(f"{config_file}: kind: expected {kind!r}, got {config.get('kind')!r}")
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(folder))
    target = pick_device(device)
    head = config.get("head")
    with quiet_transformers():
        if head is None:
            model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
        else:
            if head.get("encoder"):  # a frozen named backbone: shared with the other models that name it
                encoder, rows = shared_frozen_encoder(resolve_model(head["encoder"]), target)
            else:
                encoder, rows = AutoModel.from_pretrained(folder, dtype=torch.float32, add_pooling_layer=False), None
            model = SegmentPooledClassifier(encoder, int(head["num_labels"]), int(head["segments"]),
                                            tokenizer.sep_token_id, int(head.get("context_segments", 1)), rows)
            model.head.load_state_dict(load_file(str(folder / HEAD_NAME)))
    # A loaded reward model only scores: frozen, so a segment-encoded model caches its pooled rows.
    model.requires_grad_(False)
    model.to(target).eval()
    fmt = InputFormat.from_dict(config["input"])
    return SequenceModel(model, tokenizer, fmt, config.get("style", "pair"), target, batch_size), config
