"""``python -m characterflywheel.train <recipe> --parent SPEC --data JSONL --out DIR`` (one recipe),
also the entry point for ``accelerate launch ... -m characterflywheel.train`` (see the package
docstring). Settings come from the ``[train]`` section: ``--preset``, ``--config`` (a flywheel TOML)
and ``--set key=value`` overrides of train keys (``--set sft_max_steps=10``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from characterflywheel.train.settings import PRESETS, RECIPES, TrainConfig


def _settings(config_path: str | None, preset: str | None, overrides: list[str]) -> TrainConfig:
    from characterflywheel.config import load_config

    dotted = [item if item.startswith("train.") else f"train.{item}" for item in overrides]
    return load_config(config_path, preset, dotted).train


def _reward_fn(args: argparse.Namespace):  # noqa: ANN202 - the judge's callable
    if not args.reward_model:
        raise SystemExit(f"{args.recipe}: --reward-model DIR is required (the reward stage's output)")
    from characterflywheel.reward import load_judge  # owned by the reward stage

    return load_judge(Path(args.reward_model), args.pairwise_weight).as_reward_fn()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m characterflywheel.train", description=__doc__)
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("--parent", required=True, help="model spec: embedded:smollm2-135m-instruct or an HF folder")
    parser.add_argument("--data", required=True, help="SFT set (sft), preference set (dpo) or prompts set (grpo, online_dpo)")
    parser.add_argument("--out", required=True, help="folder for the child model")
    parser.add_argument("--work-dir", help="checkpoints (default: <out>.work); a re-run resumes from here")
    parser.add_argument("--config", help="flywheel TOML whose [train] section to use")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="tiny or demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--reward-model", help="grpo / online_dpo: the reward stage's folder")
    parser.add_argument("--pairwise-weight", type=float, default=0.5)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    from characterflywheel.train import run_recipe

    settings = _settings(args.config, args.preset, args.overrides)
    reward_fn = _reward_fn(args) if args.recipe in ("grpo", "online_dpo") else None
    out_dir = Path(args.out)
    work_dir = Path(args.work_dir) if args.work_dir else out_dir.with_name(out_dir.name + ".work")
    metrics = run_recipe(args.recipe, args.parent, Path(args.data), out_dir, settings, work_dir, reward_fn, args.progress)
    print(json.dumps(metrics, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
