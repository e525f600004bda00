"""Run directories: atomic stages, manifest-matched skipping, and a real kill-and-resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from characterflywheel.runs import MANIFEST, RunDir, StageContext, content_hash


def write_text(name: str, text: str):
    def stage(context: StageContext) -> None:
        (context.out_dir / name).write_text(text)
        context.log_metrics({"chars": len(text)})

    return stage


def test_stage_writes_manifest_and_is_skipped_when_identical(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    source = tmp_path / "in.txt"
    source.write_text("hello")
    first = run.run_stage(0, "copy", write_text("out.txt", "x"), inputs={"src": source}, config_hash="h1")
    assert not first.skipped
    manifest = json.loads((first.out_dir / MANIFEST).read_text())
    assert manifest["status"] == "complete"
    assert manifest["inputs"] == {"src": content_hash(source)}
    assert manifest["outputs"].keys() == {"out.txt"}
    assert manifest["metrics"] == {"chars": 1.0}
    assert {"python", "characterflywheel", "torch"} <= manifest["versions"].keys()
    again = run.run_stage(0, "copy", write_text("out.txt", "y"), inputs={"src": source}, config_hash="h1")
    assert again.skipped and (again.out_dir / "out.txt").read_text() == "x"


@pytest.mark.parametrize("change", ["input", "config", "code"])
def test_stage_reruns_when_inputs_config_or_code_change(tmp_path: Path, change: str) -> None:
    run = RunDir(tmp_path / "run")
    source = tmp_path / "in.txt"
    source.write_text("hello")
    kwargs = {"inputs": {"src": source}, "config_hash": "h1", "code_version": "1"}
    run.run_stage(0, "copy", write_text("out.txt", "x"), **kwargs)
    if change == "input":
        source.write_text("changed")
    elif change == "config":
        kwargs["config_hash"] = "h2"
    else:
        kwargs["code_version"] = "2"
    result = run.run_stage(0, "copy", write_text("out.txt", "y"), **kwargs)
    assert not result.skipped and (result.out_dir / "out.txt").read_text() == "y"


def test_failed_stage_leaves_no_stage_folder(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")

    def boom(context: StageContext) -> None:
        (context.out_dir / "half.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run.run_stage(0, "broken", boom)
    assert not run.stage_dir(0, "broken").exists()
    assert run.completed_stages(0) == []
    assert not run.run_stage(0, "broken", write_text("ok.txt", "ok")).skipped


def test_missing_input_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        RunDir(tmp_path).run_stage(0, "s", write_text("a", "b"), inputs={"x": tmp_path / "nope.txt"})


PIPELINE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from characterflywheel.runs import RunDir

    root, log = Path(sys.argv[1]), Path(sys.argv[2])
    run = RunDir(root)
    def note(line):
        with log.open("a") as f:
            f.write(line + "\\n")

    def prepare(ctx):
        note("prepare")
        (ctx.out_dir / "numbers.json").write_text(json.dumps(list(range(1, 11))))

    def train(ctx):
        # a "training" loop that checkpoints every step in work_dir and resumes from it
        numbers = json.loads((ctx.inputs["numbers"]).read_text())
        ckpt = ctx.work_dir / "checkpoint.json"
        state = json.loads(ckpt.read_text()) if ckpt.exists() else {"step": 0, "total": 0}
        note(f"train from step {state['step']}")
        for step in range(state["step"], len(numbers)):
            state = {"step": step + 1, "total": state["total"] + numbers[step] ** 2}
            ckpt.write_text(json.dumps(state))
            note(f"step {step + 1}")
            time.sleep(0.15)
        (ctx.out_dir / "model.json").write_text(json.dumps({"total": state["total"]}))

    def report(ctx):
        note("report")
        total = json.loads(ctx.inputs["model"].read_text())["total"]
        (ctx.out_dir / "report.txt").write_text(f"sum of squares = {total}\\n")

    a = run.run_stage(0, "prepare", prepare)
    b = run.run_stage(0, "train", train, inputs={"numbers": a.out_dir / "numbers.json"})
    run.run_stage(0, "report", report, inputs={"model": b.out_dir / "model.json"})
    note("finished")
    """
)


def _start(script: Path, root: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(root), str(log)], start_new_session=True)


def test_killed_multistage_run_resumes_and_matches_uninterrupted(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)

    clean_root, clean_log = tmp_path / "clean", tmp_path / "clean.log"
    assert _start(script, clean_root, clean_log).wait(timeout=120) == 0

    root, log = tmp_path / "killed", tmp_path / "killed.log"
    process = _start(script, root, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "step 4" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert "finished" not in log.read_text()
    assert (root / "gen-0" / "prepare" / MANIFEST).exists()
    assert not (root / "gen-0" / "train").exists(), "a killed stage must not look complete"

    assert _start(script, root, log).wait(timeout=120) == 0
    lines = log.read_text().splitlines()
    assert lines.count("prepare") == 1, "the finished stage was re-run"
    resumed_from = [line for line in lines if line.startswith("train from step")]
    assert resumed_from[0] == "train from step 0" and int(resumed_from[1].split()[-1]) >= 4
    assert not (root / "gen-0" / "train.work").exists() and not (root / "gen-0" / "train.partial").exists()
    for stage in ("prepare", "train", "report"):
        clean_out = json.loads((clean_root / "gen-0" / stage / MANIFEST).read_text())["outputs"]
        resumed_out = json.loads((root / "gen-0" / stage / MANIFEST).read_text())["outputs"]
        assert clean_out == resumed_out, stage
    assert (root / "gen-0" / "report" / "report.txt").read_text() == "sum of squares = 385\n"

    assert _start(script, root, log).wait(timeout=120) == 0
    assert log.read_text().splitlines()[len(lines):] == ["finished"], "a complete run must skip every stage"


def _hold_memory(context: StageContext) -> None:
    """A child process holds 300 MB for a second while this process waits for it."""
    subprocess.run([sys.executable, "-c", "import time; block = bytearray(300 * 2**20); time.sleep(1.5)"], check=True)


def _idle(context: StageContext) -> None:
    time.sleep(0.6)


def test_a_stage_peak_counts_the_processes_it_starts_and_only_its_own_time(tmp_path: Path) -> None:
    """The manifest's peak_rss_mib is this stage's peak of the process and its children together:
    a stage whose child held 300 MB reports at least that on top of this process; the next stage,
    which holds nothing, does not inherit it (getrusage's high-water mark would)."""
    import psutil

    run = RunDir(tmp_path / "run")
    own_mib = psutil.Process().memory_info().rss / 2**20
    holding = run.run_stage(0, "holding", _hold_memory, config_hash="h")
    idle = run.run_stage(0, "idle", _idle, config_hash="h")
    assert holding.manifest["peak_rss_mib"] >= own_mib + 280
    assert idle.manifest["peak_rss_mib"] < holding.manifest["peak_rss_mib"] - 250


def test_malloc_arenas_are_capped_for_the_cli_and_its_children_unless_the_user_chose():
    probe = ("import os, characterflywheel.cli, subprocess, sys; print(os.environ['MALLOC_ARENA_MAX']); "
             "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"MALLOC_ARENA_MAX\"])'], "
             "capture_output=True, text=True).stdout.strip())")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    capped = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert capped.stdout.split() == ["2", "2"]
    chosen = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=env | {"MALLOC_ARENA_MAX": "5"}, check=True)
    assert chosen.stdout.split() == ["5", "5"]
