"""The whole loop on the tiny preset with the real embedded models (and a generation-0 holdout arm):
killed at a random stage of generation 1 (SIGKILL, mid-stage), re-run, and finished with every
artifact in place."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GENERATION_STAGES = ["curate", "annotate", "reward", "sample", "herd", "evaluate", "gate", "deploy"]


def flywheel_command(runs_dir: Path) -> list[str]:
    return [sys.executable, "-m", "characterflywheel.cli", "run", "--preset", "tiny", "-n", "1",
            "--set", f"runs_dir={runs_dir}", "--set", "flywheel.holdout_weight=1"]


def kill_when_stage_starts(command: list[str], marker: Path, grace_s: float, timeout_s: float = 900) -> bool:
    """Start the run; SIGKILL its process group ``grace_s`` after ``marker`` appears. True if killed."""
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if marker.exists():
            time.sleep(grace_s)  # mid-stage: the fastest stage (reward, tiny preset) takes ~4 s
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.1)
    process.kill()
    return False


@pytest.mark.slow
def test_tiny_flywheel_killed_at_a_random_stage_resumes_to_the_same_artifacts(tmp_path: Path) -> None:
    victim = os.environ.get("KILL_STAGE") or random.Random(time.time_ns()).choice(GENERATION_STAGES[:6])  # KILL_STAGE replays a failure
    gen1 = tmp_path / "tiny" / "gen-1"
    killed = kill_when_stage_starts(flywheel_command(tmp_path), gen1 / f"{victim}.partial", grace_s=0.5)
    assert killed, f"the run ended before stage {victim} started"
    assert not (gen1 / victim / "manifest.json").exists(), f"{victim} finished before the kill"
    finished_before = {stage: (gen1 / stage / "manifest.json").read_text()
                       for stage in GENERATION_STAGES if (gen1 / stage / "manifest.json").exists()}

    resumed = subprocess.run(flywheel_command(tmp_path), capture_output=True, text=True, timeout=900,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert resumed.returncode == 0, f"killed in {victim}: {resumed.stdout[-3000:]}{resumed.stderr[-3000:]}"

    for stage, manifest in finished_before.items():  # skipped, not redone
        assert (gen1 / stage / "manifest.json").read_text() == manifest, stage
    for stage in GENERATION_STAGES:
        manifest = json.loads((gen1 / stage / "manifest.json").read_text())
        assert manifest["status"] == "complete"
        assert not (gen1 / f"{stage}.partial").exists()
    assert (gen1 / "herd" / "model" / "config.json").is_file()
    summary = json.loads((gen1 / "summary.json").read_text())
    assert summary["data_counts"]["curated"] > 0 and "gates" in summary and "offline" in summary
    assert summary["offline"]["evidence_vs_parent"]["reward_model_z"] is not None
    assert summary["history_bias"]["child"]["features"]  # the evaluate stage's monitor reaches the report
    assert {"child", "parent"} <= set(summary["truth"]["landscape_p_continue"])
    served = json.loads((gen1 / "deploy" / "decision.json").read_text())["arms"]
    assert served["holdout"] == "gen-0" and "champion" in served  # generation 0 keeps serving its share
    report = (tmp_path / "tiny" / "report.html").read_text()
    assert "gen-1" in report or "Generation 1" in report
    assert "History bias" in report


@pytest.mark.slow
def test_a_deliberately_broken_child_is_stopped_at_the_gate_and_the_parent_stays_champion(tmp_path: Path) -> None:
    """Two SFT steps at a learning rate 25,000 times the default scramble the child's weights (it
    repeats one word): its replies are broken, its gates fail with reasons, it is registered
    but never served, and generation 0 stays champion. The hidden truth does not call the stop a miss."""
    command = [sys.executable, "-m", "characterflywheel.cli", "run", "--preset", "tiny", "-n", "1",
               "--set", f"runs_dir={tmp_path}", "--set", 'train.recipes=["sft"]',
               # at 0.05 the child wrote word salad or one word over and over by the draw of its few rows, and
               # once (CI) a child the broken-reply gate could not tell from a poor one; at 0.5 (six seeds here)
               # every child repeated one token: "till till till ..."
               "--set", "train.sft_learning_rate=0.5",
               # the tiny preset's 32-token candidates are mostly cut off (never SFT targets): at 64 tokens and 4
               # a prompt 59 % still were and 4 rows were left here (0 on another machine once: no step taken, the
               # child was its parent); 128 tokens, 6 a prompt
               "--set", "sample.max_new_tokens=128", "--set", "sample.k=6"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert finished.returncode == 0, f"{finished.stdout[-3000:]}{finished.stderr[-3000:]}"
    gen1 = tmp_path / "tiny" / "gen-1"
    printed = finished.stdout + finished.stderr
    chatter = [marker for marker in ("{'loss'", "Loading weights", "Warning", "it/s]", "Batches", "100%") if marker in printed]
    assert not chatter, printed[-3000:]  # our progress view only; the libraries' own with --verbose
    assert "gate failed: broken_replies_not_more" in printed and "Champion: gen-0" in printed, printed[-3000:]

    gates = json.loads((gen1 / "gate" / "gates.json").read_text())
    assert gates["passed"] is False
    failed = {check["name"]: check["reason"] for check in gates["checks"] if not check["passed"]}
    # the tiny reward models score its replies at chance (win rate 0.498 [0.488, 0.506] here; on CI's
    # machine that gate did not print its failure), so the broken replies themselves must stop it
    assert "significantly worse than the parent" in failed["broken_replies_not_more"], failed

    decision = json.loads((gen1 / "deploy" / "decision.json").read_text())
    assert decision["challenger_model"] is None and not decision["promoted"]
    assert decision["champion_version"] == "gen-0"
    # the run's last window: no challenger, no holdout, no next generation: nothing would read it
    assert decision["arms"] == {} and "no window served" in decision["reason"] and "no window served" in printed

    from characterflywheel.deploy.registry import Registry

    registry = Registry(tmp_path / "tiny", model_name="tiny-policy")
    assert registry.champion().model_version == "gen-0" and registry.challenger() is None
    child_version = json.loads((gen1 / "gate" / "registry.json").read_text())["version"]
    assert registry.record(child_version)["gates"]["passed"] is False  # registered with why it failed

    herded = json.loads((gen1 / "herd" / "manifest.json").read_text())["metrics"]
    assert herded["sft/steps_run"] >= 1, herded  # else the "broken" child is its parent
    truth = json.loads((gen1 / "evaluate" / "truth.json").read_text())["truth_set"]["child_vs_parent"]
    # paired over the truth set (8 prompts x 2): -0.05 to -0.24 over six seeds here, +0.039 [-0.054, +0.132] on
    # one CI run: the landscape reads a reply's relevance by embedding and its repetition against earlier turns,
    # not within the reply, so "Hey Hey Hey ..." to "Hey!" can read as relevant. Not significantly better, then:
    # the stop is not a miss on the truth
    assert truth["lo"] < 0, truth


def test_truth_set_figures_read_engagement_and_card_rules_paired_by_prompt(tmp_path: Path) -> None:
    """The truth set's replies give P(continue) and, against each prompt's card, instruction following
    and violations; the child that opens with the captain's "Ahoy ... Yo ho ho!" is ahead on both."""
    from characterflywheel.config import load_config
    from characterflywheel.flywheel import truth_set_figures

    class Env:
        def truth_prompts(self, count):
            return [{"prompt_id": f"truth-{i}", "character_id": "captain-saltbeard",
                     "prompt": [{"role": "system", "content": "You are the captain."},
                                {"role": "user", "content": f"hello number {i}"}]} for i in range(count)]

        def truth(self, prompts, replies):
            return [0.6 if reply.startswith("Ahoy") else 0.4 for reply in replies]

    class Backend:
        def __init__(self, reply):
            self.reply = reply

        def chat(self, prompts, params, progress=False):
            return [[self.reply] * params.n for _ in prompts]

    config = load_config(preset="tiny", overrides=[f"runs_dir={tmp_path}", "evaluate.truth_prompts=4"])
    models = {"child": "child", "parent": "parent", "generation0": "parent"}
    backends = {"child": Backend("Ahoy, matey! Yo ho ho! A fine day."), "parent": Backend("Hello there, friend.")}
    found = truth_set_figures(config, Env(), models, backends)["truth_set"]
    assert found["child_vs_generation0"]["diff"] == pytest.approx(0.2)
    following = found["instruction_following"]
    assert following["mean"] == {"child": 1.0, "parent": 0.0, "generation0": 0.0}
    assert following["child_vs_generation0"]["diff"] == pytest.approx(1.0)
    assert following["child_vs_generation0"]["n_prompts"] == 4
    violations = found["violation_rate"]
    assert violations["mean"]["parent"] == pytest.approx(2 / 3)  # no "Ahoy", no catchphrase; no AI disclaimer kept
    assert violations["child_vs_parent"]["diff"] == pytest.approx(-2 / 3)
