"""Rejection sampling: candidates/s, and what it buys on the hidden landscape (outside the flywheel).

Usage: ``python benchmarks/rejection_sampling.py RUN_DIR [--generation 1] [--prompts 32] [--k 4]``

Needs a run directory where the flywheel reached the ``sample`` stage of ``--generation`` (e.g.
``make demo`` -> ``runs/demo``). It re-runs rejection sampling with that generation's reward models on
``--prompts`` of its curated prompts, timed, and prints candidates/s. Then, as a judge the flywheel
never sees, the simulated world's hidden landscape scores:

* the pointwise reward model's pairwise accuracy on held-out candidate pairs (the landscape's
  P(continue) orders each pair; pairs whose true difference is below 0.02 are left out);
* the true P(continue) of the rejection-sampled (selected) reply vs the base model's first sample.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from characterflywheel.config import load_config  # noqa: E402
from characterflywheel.demo import SimulatedEnvironment  # noqa: E402
from characterflywheel.flywheel import CURATED, backend_for, judge_from, read_jsonl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--generation", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--preset", default="demo")
    args = parser.parse_args()

    from characterflywheel.sample.rejection import rejection_sample

    config = load_config(preset=args.preset, overrides=[f"name={args.run_dir.name}", f"runs_dir={args.run_dir.parent}"])
    gen_dir = args.run_dir / f"gen-{args.generation}"
    prompts = read_jsonl(gen_dir / "curate" / CURATED)[: args.prompts]
    judge = judge_from(config, gen_dir / "reward")
    settings = config.sample.model_copy(update={"k": args.k})
    base = str(config.model.policy)
    backend = backend_for(config, base)
    started = time.perf_counter()
    result = rejection_sample(prompts, [base], judge, lambda _: backend, settings, progress=True)
    seconds = time.perf_counter() - started
    candidates = result.report["candidates"]
    print(f"rejection sampling: {len(prompts)} prompts x k={args.k} = {candidates} candidates in {seconds:.1f} s "
          f"-> {candidates / seconds:.2f} candidates/s (generation + judge), peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    env = SimulatedEnvironment(config)
    by_prompt: dict[str, list[dict]] = {}
    for row in result.candidates:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    records = {p["prompt_id"]: p for p in prompts}
    first, selected, correct, pairs = [], [], 0, 0
    for prompt_id, rows in by_prompt.items():
        record = records[prompt_id]
        truth = env.truth([record] * len(rows), [row["reply"] for row in rows])
        scores = judge.pointwise.score([record["prompt"]] * len(rows), [row["reply"] for row in rows])
        first.append(truth[[row["candidate"] for row in rows].index(0)])
        chosen = [i for i, row in enumerate(rows) if row.get("selected")]
        if chosen:
            selected.append(truth[chosen[0]])
        for i, j in itertools.combinations(range(len(rows)), 2):
            if abs(truth[i] - truth[j]) >= 0.02:
                pairs += 1
                correct += (truth[i] > truth[j]) == (scores[i] > scores[j])
    print(f"hidden landscape: pointwise RM pairwise accuracy {correct / max(pairs, 1):.3f} on {pairs} candidate pairs "
          f"(chance 0.5)")
    print(f"hidden landscape: true P(continue) base first sample {np.mean(first):.3f} (n={len(first)}), "
          f"rejection-sampled reply {np.mean(selected):.3f} (n={len(selected)}), "
          f"gain {np.mean(selected) - np.mean(first):+.3f}")
    print(json.dumps({"candidates_per_s": candidates / seconds, "rm_pair_accuracy": correct / max(pairs, 1),
                      "truth_first": float(np.mean(first)), "truth_selected": float(np.mean(selected))}))


if __name__ == "__main__":
    main()
