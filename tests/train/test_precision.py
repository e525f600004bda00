"""Precision: ``auto`` picks bf16 (training autocast, local generation) only where bf16 is native,
and int8 projections for local generation where the CPU has VNNI instead; CPU bf16 training needs
use_cpu."""

from __future__ import annotations

import pytest
import torch

from characterflywheel.models import loading
from characterflywheel.train import common
from characterflywheel.train.settings import TrainConfig


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(("native", "expected"), [(True, {"bf16": True, "fp16": False, "use_cpu": True}),
                                                  (False, {"bf16": False, "fp16": False})])
def test_auto_on_a_cpu_follows_native_bf16(cpu_only, monkeypatch, native, expected):
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: native)
    assert common.precision_flags(TrainConfig()) == expected


def test_explicit_settings_win_over_the_cpu(cpu_only, monkeypatch):
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: True)
    assert common.precision_flags(TrainConfig(mixed_precision="no")) == {"bf16": False, "fp16": False}
    assert common.precision_flags(TrainConfig(mixed_precision="bf16"))["use_cpu"] is True


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_path = loading.Path

    def fake_path(name):
        return cpuinfo if name == "/proc/cpuinfo" else real_path(name)

    monkeypatch.setattr(loading, "Path", fake_path)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert not loading.cpu_has_native_bf16()
    assert loading.local_generation_precision("auto") == loading.LocalPrecision(torch.float32)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert loading.cpu_has_native_bf16()
    assert loading.local_generation_precision("auto") == loading.LocalPrecision(torch.bfloat16)
    assert loading.local_generation_precision("float32") == loading.LocalPrecision(torch.float32)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert loading.local_generation_precision("auto") == loading.LocalPrecision(torch.float32, int8=True)
    assert loading.local_generation_precision("int8") == loading.LocalPrecision(torch.float32, int8=True)
    cpuinfo.unlink()
    assert not loading.cpu_has_native_bf16()
