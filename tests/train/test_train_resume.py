"""Kill a real SFT run after its first checkpoint (SIGKILL) and check the re-run resumes from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STEPS = 4


def _command(sft_path: Path, out: Path, work: Path) -> list[str]:
    return [
        sys.executable, "-m", "characterflywheel.train", "sft", "--parent", "embedded:smollm2-135m-instruct",
        "--data", str(sft_path), "--out", str(out), "--work-dir", str(work),
        "--set", "save_steps=1", "--set", f"sft_max_steps={STEPS}", "--set", "sft_batch_size=2",
        "--set", "sft_max_length=96", "--set", "save_total_limit=3",
    ]


def test_killed_sft_resumes_from_its_last_checkpoint(sft_path: Path, tmp_path: Path) -> None:
    out, work = tmp_path / "child", tmp_path / "work"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    first = subprocess.Popen(_command(sft_path, out, work), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (work / "checkpoint-1" / "trainer_state.json").is_file():
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert not (out / "config.json").exists()  # it really died before finishing

    second = subprocess.run(_command(sft_path, out, work), env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    metrics = json.loads(second.stdout.strip().splitlines()[-1])
    assert metrics["resumed_from_step"] >= 1
    assert metrics["steps"] == STEPS
    assert metrics["steps_run"] == STEPS - metrics["resumed_from_step"] < STEPS
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not list(work.glob("checkpoint-*"))  # cleaned up once the child is saved
