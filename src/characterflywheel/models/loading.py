"""Resolve model specs to local folders and load policies and embedders from them.

A model spec is either an embedded name (``embedded:smollm2-135m-instruct``,
``embedded:all-minilm-l6-v2``; see :mod:`characterflywheel.models.embedded`) or a local
Hugging Face folder. Nothing is ever fetched from the Hub: every load is
``local_files_only``, so a typo fails fast with :class:`ModelNotFoundError` instead of a
network timeout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from characterflywheel.models import embedded

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED_POLICY = "embedded:smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "embedded:all-minilm-l6-v2"
EMBEDDED_PREFIX = "embedded:"


class ModelNotFoundError(FileNotFoundError):
    """A model spec that names no usable folder; ``str(error)`` is one line naming the path."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"model not found: {self.path} ({reason})")

    def __str__(self) -> str:
        return f"model not found: {self.path} ({self.reason})"

    def __reduce__(self) -> tuple[type[ModelNotFoundError], tuple[str, str]]:
        return type(self), (self.path, self.reason)


def _embedded_policy() -> Path:
    return embedded.ensure_converted(embedded.SMOLLM2)


def _embedded_embedder() -> Path:
    return embedded.shipped_folder(embedded.MINILM)


EMBEDDED_MODELS: dict[str, Callable[[], Path]] = {
    EMBEDDED_POLICY: _embedded_policy,
    EMBEDDED_EMBEDDER: _embedded_embedder,
}


def resolve_model(spec: str | Path) -> Path:
    """Local folder for ``spec``: embedded names map to their cached/shipped folder
    (converting on first use); anything else must be a folder containing ``config.json``."""
    text = str(spec).strip()
    if text.startswith(EMBEDDED_PREFIX):
        return _resolve_embedded(text)
    path = Path(text).expanduser()
    if not text or not path.exists():
        raise ModelNotFoundError(path if text else "''", "no such directory")
    if not path.is_dir():
        raise ModelNotFoundError(path, "not a directory")
    if not (path / "config.json").is_file() and not is_adapter_folder(path):
        raise ModelNotFoundError(path, "no config.json")  # nor a PEFT adapter_config.json
    return path.resolve()


ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_folder(path: Path) -> bool:
    """A PEFT adapter saved on its own: ``adapter_config.json`` naming its base model's folder."""
    return (Path(path) / ADAPTER_CONFIG).is_file() and not (Path(path) / "config.json").is_file()


def adapter_base(path: Path) -> Path:
    """The folder an adapter folder was trained on (itself possibly an adapter folder)."""
    import json

    base = json.loads((Path(path) / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelNotFoundError(path, f"{ADAPTER_CONFIG} names no base_model_name_or_path")
    if base.startswith("../"):  # a sibling step of its herding chain (see train.common.save_child)
        return resolve_model(Path(path).resolve().parent / base[3:])
    return resolve_model(base)


def load_causal_lm(spec: str | Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The causal LM of ``spec``. An adapter folder (a LoRA child kept as MBs instead of a full copy)
    is loaded onto its base, recursively (a chain of generations), merged in fp32, then cast."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(spec)
    if not is_adapter_folder(path):
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    from peft import PeftModel

    base = load_causal_lm(adapter_base(path), torch.float32)
    merged = PeftModel.from_pretrained(base, str(path), local_files_only=True).merge_and_unload()
    return merged.to(dtype)


def _resolve_embedded(name: str) -> Path:
    locate = EMBEDDED_MODELS.get(name)
    if locate is None:
        known = ", ".join(sorted(EMBEDDED_MODELS))
        raise ModelNotFoundError(name, f"unknown embedded model; known: {known}")
    try:
        return locate()
    except embedded.ShippedModelMissing as error:
        raise ModelNotFoundError(name, str(error).replace("\n", " ")) from error


def _cpu_flags() -> set[str]:
    """The x86 feature flags of /proc/cpuinfo's first processor (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    line = re.search(r"^flags\s*:(.*)$", text, flags=re.MULTILINE)
    return set(line.group(1).split()) if line else set()


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU multiplies bf16 natively (AVX512-BF16 or AMX, read from /proc/cpuinfo).
    There bf16 matmuls run 2-3x as fast as fp32 (measured on a 2-core AMD EPYC); without them bf16 is
    emulated and slower than fp32 (~20 against ~140 GFLOP/s on a 2-core AVX2 machine)."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_int8_dot_product() -> bool:
    """Whether this x86 CPU has VNNI int8 dot products (AVX512-VNNI, AVX-VNNI or AMX-INT8), where the
    fast backend's int8 projections run 2-5x as fast as fp32 (:mod:`characterflywheel.models.int8`)."""
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


@dataclass(frozen=True)
class LocalPrecision:
    """How the local CPU backend runs a model: weights, activations and KV cache in ``dtype``; with
    ``int8`` (then ``dtype`` is float32) the decoder layers' projections run int8 and the KV cache bf16."""

    dtype: torch.dtype
    int8: bool = False


def local_generation_precision(setting: str) -> LocalPrecision:
    """``generation.dtype`` for the local CPU backend: ``auto`` is bf16 where the CPU has it natively,
    else int8 projections where it has VNNI, else float32."""
    if setting == "auto":
        if cpu_has_native_bf16():
            return LocalPrecision(torch.bfloat16)
        return LocalPrecision(torch.float32, int8=cpu_has_int8_dot_product())
    if setting == "int8":
        return LocalPrecision(torch.float32, int8=True)
    return LocalPrecision({"float32": torch.float32, "bfloat16": torch.bfloat16}[setting])


def load_policy(
    spec: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Causal LM (eval mode) and its tokenizer, left-padded with a pad token set."""
    from transformers import AutoTokenizer

    path = resolve_model(spec)
    model = load_causal_lm(path, dtype)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_embedder(spec: str | Path = EMBEDDED_EMBEDDER) -> SentenceTransformer:
    """Sentence-transformers embedder on CPU."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model(spec)
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)
