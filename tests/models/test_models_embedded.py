"""GGUF -> HF conversion of the embedded policy: a real conversion, reuse, atomicity, locking."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from characterflywheel.models import EMBEDDED_POLICY, resolve_model
from characterflywheel.models import embedded


def fake_converter(calls: list[Path], delay_s: float = 0.0):
    def convert(gguf_file: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        time.sleep(delay_s)
        (out_dir / "config.json").write_text("{}")
        (out_dir / embedded.CONVERSION_MARKER).write_text("{}")

    return convert


@pytest.mark.slow
def test_real_conversion_is_a_loadable_hf_folder(embedded_policy_dir: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    files = {p.name for p in embedded_policy_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", embedded.CONVERSION_MARKER} <= files
    config = AutoConfig.from_pretrained(embedded_policy_dir)
    assert config.model_type == "llama" and config.num_hidden_layers == 30
    assert getattr(config, "quantization_config", None) is None  # plain fp32 weights
    tokenizer = AutoTokenizer.from_pretrained(embedded_policy_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")  # ChatML came with the GGUF
    marker = json.loads((embedded_policy_dir / embedded.CONVERSION_MARKER).read_text())
    assert marker["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert not [p for p in embedded_policy_dir.parent.iterdir() if p.name.endswith(".partial")]


@pytest.mark.slow
def test_second_resolve_reuses_the_conversion(
    embedded_cache: Path, embedded_policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(embedded.CACHE_ENV, str(embedded_cache))
    before = (embedded_policy_dir / embedded.CONVERSION_MARKER).stat().st_mtime_ns

    def must_not_convert(*args: object) -> None:
        raise AssertionError("converted twice")

    monkeypatch.setattr(embedded, "convert_gguf_to_hf", must_not_convert)
    assert resolve_model(EMBEDDED_POLICY) == embedded_policy_dir
    assert (embedded_policy_dir / embedded.CONVERSION_MARKER).stat().st_mtime_ns == before


def test_cache_location_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path))
    assert embedded.converted_folder(embedded.SMOLLM2) == tmp_path / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv(embedded.CACHE_ENV)
    assert embedded.cache_root() == Path.home() / ".cache" / "characterflywheel"


def test_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(gguf_file: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")  # half-written folder
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "convert_gguf_to_hf", crash)
    with pytest.raises(KeyboardInterrupt):
        embedded.ensure_converted(embedded.SMOLLM2, root=tmp_path)
    models = tmp_path / "models"
    assert not embedded.converted_folder(embedded.SMOLLM2, tmp_path).exists()
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_unmarked_leftover_folder_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = embedded.converted_folder(embedded.SMOLLM2, tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # no marker: an interrupted copy, not a conversion
    calls: list[Path] = []
    monkeypatch.setattr(embedded, "convert_gguf_to_hf", fake_converter(calls))
    assert embedded.ensure_converted(embedded.SMOLLM2, root=tmp_path) == target
    assert len(calls) == 1 and embedded.is_converted(target)


def test_concurrent_first_uses_convert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(embedded, "convert_gguf_to_hf", fake_converter(calls, delay_s=0.3))
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(embedded.ensure_converted(embedded.SMOLLM2, root=tmp_path)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(set(results)) == 1 and embedded.is_converted(results[0])


def test_lost_rename_race_is_tolerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where locking is unavailable, another process may publish first: keep its folder."""
    target = embedded.converted_folder(embedded.SMOLLM2, tmp_path)

    def another_process_wins(src: str | Path, dst: str | Path) -> None:
        target.mkdir(parents=True)
        fake_converter([])(Path("unused.gguf"), target)
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(embedded, "convert_gguf_to_hf", fake_converter([]))
    monkeypatch.setattr(embedded.os, "rename", another_process_wins)
    assert embedded.ensure_converted(embedded.SMOLLM2, root=tmp_path) == target
    assert embedded.is_converted(target)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".partial")]
