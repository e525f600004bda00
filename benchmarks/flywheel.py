"""Cost growth of the flywheel: wall time and peak RSS per stage and per generation at 1x, 4x, 16x traffic.

Usage: ``python benchmarks/flywheel.py [--preset tiny] [--generations 1] [--scales 1 4 16] [--out /tmp/fwbench]``

Each scale multiplies the simulated users (``world.users``), so the traffic a generation curates,
annotates, scores and trains on grows with it. Every scale runs in a fresh run directory, as its own
process (``characterflywheel run``); stage wall times and the process's peak RSS when the stage ended
come from the stage manifests. The stage figures are what a team should expect to grow: curation and
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--generations", type=int, default=1)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--out", type=Path, default=Path("/tmp/characterflywheel-bench"))
    args = parser.parse_args()
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
        rows = stage_rows(next(runs_dir.iterdir()))
        print(f"\n{scale}x traffic ({base_users * scale} simulated users): {wall:.0f} s wall for "
              f"{args.generations + 1} generations")
        print(f"{'gen':>3} {'stage':<10} {'seconds':>8} {'peak RSS MiB':>13}")
        for generation, stage, seconds, rss in rows:
            print(f"{generation:>3} {stage:<10} {seconds:>8.1f} {rss:>13.0f}")
        per_generation: dict[int, float] = {}
        for generation, _, seconds, _ in rows:
            per_generation[generation] = per_generation.get(generation, 0.0) + seconds
        print("per generation: " + ", ".join(f"gen {g}: {s:.0f} s" for g, s in sorted(per_generation.items())))


if __name__ == "__main__":
    main()
