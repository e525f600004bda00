"""Mixed precision: ``auto`` picks bf16 autocast only where bf16 is native; CPU bf16 needs use_cpu."""

from __future__ import annotations

import pytest
import torch

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
    real_path = common.Path

    def fake_path(name):
        return cpuinfo if name == "/proc/cpuinfo" else real_path(name)

    monkeypatch.setattr(common, "Path", fake_path)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert not common.cpu_has_native_bf16()
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert common.cpu_has_native_bf16()
    cpuinfo.unlink()
    assert not common.cpu_has_native_bf16()
