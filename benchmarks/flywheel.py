"""Cost growth of the flywheel: wall time, peak RSS and disk written per stage and per generation at 1x,
4x, 16x traffic.

Usage: ``python benchmarks/flywheel.py [--preset tiny] [--generations 1] [--scales 1 4 16] [--out /tmp/fwbench]``
(the demo preset's own figures: ``--preset demo --generations 2 --scales 1``; the figures of a run that
already finished, such as ``make demo``'s: ``--run-dir runs/demo``)

Disk written per generation is the size of its ``gen-N/`` folder when the run ends (models, checkpoints
that were kept, data); the run's shared folders (MLflow store, embedding and truth caches) are listed
apart.

Each scale multiplies the simulated users (``world.users``), so the traffic a generation curates,
annotates, scores and trains on grows with it. Every scale runs in a fresh run directory, as its own
process (``characterflywheel run``); stage wall times and each stage's peak RSS (the run's process and
the processes it started, together, sampled every 0.25 s: ``runs.PeakMemory``) come from the stage
manifests. The stage figures are what a team should expect to grow: curation and
annotation with traffic, reward training with annotations, sampling with curated prompts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def stage_rows(run_dir: Path) -> list[tuple[int, str, float, float]]:
    rows = []
    for manifest_path in sorted(run_dir.glob("gen-*/*/manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        took = dt.datetime.fromisoformat(manifest["finished_at"]) - dt.datetime.fromisoformat(manifest["started_at"])
        rows.append((manifest["generation"], manifest["stage"], took.total_seconds(), manifest.get("peak_rss_mib", 0.0)))
    return sorted(rows)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def generation_rows(run_dir: Path, rows: list[tuple[int, str, float, float]]) -> list[tuple[int, float, float, int]]:
    """(generation, seconds, peak RSS MiB, bytes on disk) per generation."""
    out = []
    for generation in sorted({row[0] for row in rows}):
        mine = [row for row in rows if row[0] == generation]
        out.append((generation, sum(r[2] for r in mine), max(r[3] for r in mine),
                    folder_bytes(run_dir / f"gen-{generation}")))
    return out


def print_run(run_dir: Path) -> None:
    """Per stage and per generation: seconds, peak RSS and disk, from the run's stage manifests."""
    rows = stage_rows(run_dir)
    print(f"{'gen':>3} {'stage':<10} {'seconds':>8} {'peak RSS MiB':>13}")
    for generation, stage, seconds, rss in rows:
        print(f"{generation:>3} {stage:<10} {seconds:>8.1f} {rss:>13.0f}")
    print(f"{'gen':>3} {'wall s':>8} {'peak RSS GiB':>13} {'disk MB':>9}")
    for generation, seconds, rss, size in generation_rows(run_dir, rows):
        print(f"{generation:>3} {seconds:>8.0f} {rss / 1024:>13.2f} {size / 1e6:>9.0f}")
    shared = {path.name: folder_bytes(path) for path in run_dir.iterdir() if path.is_dir()
              and not path.name.startswith("gen-")}
    print("shared folders: " + ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in sorted(shared.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--generations", type=int, default=1)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--out", type=Path, default=Path("/tmp/characterflywheel-bench"))
    parser.add_argument("--run-dir", type=Path, help="only print the figures of this finished run (e.g. runs/demo)")
    args = parser.parse_args()
    if args.run_dir is not None:
        print_run(args.run_dir)
        return
    from characterflywheel.config import load_config

    base_users = load_config(preset=args.preset).world.users
    for scale in args.scales:
        runs_dir = args.out / f"x{scale}"
        command = [sys.executable, "-m", "characterflywheel.cli", "run", "--preset", args.preset,
                   "-n", str(args.generations), "--set", f"runs_dir={runs_dir}",
                   "--set", f"world.users={base_users * scale}", "--set", f"world.concurrency={min(64, base_users * scale)}"]
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - began
        print(f"\n{scale}x traffic ({base_users * scale} simulated users): {wall:.0f} s wall for "
              f"{args.generations + 1} generations")
        print_run(next(runs_dir.iterdir()))


if __name__ == "__main__":
    main()
