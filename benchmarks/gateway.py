"""Serving throughput: simulated users against the gateway, continuous vs micro-batching.

Usage: ``python benchmarks/gateway.py [--users 150] [--arms 3] [--days 2] [--modes continuous micro]``

Each mode serves ``--arms`` A/B arms of the embedded policy (one backend, a different sampling
temperature per arm, so each arm is its own batch group, as arms with their own models are)
through the real gateway, and the demo preset's simulated users talk to it over HTTP for
``--days`` days (every user at once on day 0, returning users later). Prints, per mode, the
window's wall time, requests, requests/s, decode steps and the mean sequences per step.
Requests/s depends on the traffic: a user's next turn waits for their last reply, so a small
population leaves the batches thin whatever the scheduler.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from characterflywheel.config import ArmConfig, load_config  # noqa: E402
from characterflywheel.demo import build_world, simulate_traffic  # noqa: E402
from characterflywheel.models import fast_backend  # noqa: E402

TEMPERATURES = (0.8, 0.7, 0.9, 0.6, 1.0)


def count_decode_steps() -> dict[str, int]:
    """Decode steps and the sequences they carried, counted on the fast backend's scheduler."""
    tally = {"steps": 0, "sequences": 0}
    step = fast_backend._Run._decode_step

    def counted(run: fast_backend._Run) -> None:
        step(run)
        tally["steps"] += 1
        tally["sequences"] += run.last_batch

    fast_backend._Run._decode_step = counted  # type: ignore[method-assign]
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--arms", type=int, default=3, choices=range(1, len(TEMPERATURES) + 1))
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["continuous", "micro"], choices=["continuous", "micro"])
    args = parser.parse_args()
    tally = count_decode_steps()
    arms = [ArmConfig(name=f"arm{i}", temperature=TEMPERATURES[i]) for i in range(args.arms)]
    print(f"{args.users} users, {args.arms} arms, {args.days} days (demo preset, embedded policy)")
    print(f"{'mode':<11} {'wall s':>7} {'requests':>9} {'req/s':>6} {'steps':>6} {'seq/step':>9}")
    for mode in args.modes:
        config = load_config(preset="demo", overrides=[
            f"world.users={args.users}", f"world.concurrency={args.users}", f"world.days={args.days}",
            f"serve.batch_size={max(32, args.users // args.arms + 16)}",
            f"serve.continuous_batching={'true' if mode == 'continuous' else 'false'}"])
        config = config.model_copy(update={"serve": config.serve.model_copy(update={"arms": arms})})
        world = build_world(config)
        tally.update(steps=0, sequences=0)
        with tempfile.TemporaryDirectory() as out:
            began = time.perf_counter()
            summary = simulate_traffic(config, world, Path(out))
            wall = time.perf_counter() - began
        requests = int(summary["requests"])
        print(f"{mode:<11} {wall:>7.1f} {requests:>9} {requests / wall:>6.2f} {tally['steps']:>6} "
              f"{tally['sequences'] / max(1, tally['steps']):>9.1f}")


if __name__ == "__main__":
    main()
