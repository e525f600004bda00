"""Controlled comparisons in the simulated world: our answer to the paper's insight sections.

An experiment runs the flywheel for one generation (by default) under each variant and each seed,
every run in its own run directory, and tabulates what each child did: the reward models' win rate
over the parent, the hidden landscape's P(continue) change (the truth only the simulation knows),
instruction following, style artifacts and the A/B lift. The table lands in
``<run>/experiments/<name>.json``, which the HTML report renders.

Variants are config overrides, so an experiment is only a list of ``--set`` lines; anything the
config can express can be compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.config import Config, ConfigError
from characterflywheel.data.jsonl import write_json


@dataclass(frozen=True)
class Experiment:
    description: str
    variants: dict[str, list[str]]


EXPERIMENTS: dict[str, Experiment] = {
    "grpo_vs_online_dpo": Experiment(
        "Online RL recipe after SFT: GRPO against Online DPO, same reward models and prompts (paper 5.2).",
        {"grpo": ["train.recipes=['sft', 'grpo']"], "online_dpo": ["train.recipes=['sft', 'online_dpo']"]},
    ),
    "near_vs_off_policy": Experiment(
        "Curate the last deployed window (near-policy) or the base model's traffic every time (paper 7.2).",
        {"near_policy": ["flywheel.data_source='deployed'"], "off_policy": ["flywheel.data_source='generation0'"]},
    ),
    "variance_vs_mean_prompts": Experiment(
        "Hard prompts for online RL chosen by reward variance or by low mean reward (paper 7.3).",
        {"variance": ["sample.hard_by='variance'", "train.recipes=['sft', 'grpo']"],
         "mean": ["sample.hard_by='mean'", "train.recipes=['sft', 'grpo']"]},
    ),
    "user_signal_rl": Experiment(
        "RL on the user-signal model's predicted thumbs-up instead of the reward models: expect the proxy "
        "to rise while the hidden P(continue) does not (paper 7.4).",
        {"reward_models": ["train.recipes=['grpo']"],
         "user_signal": ["train.recipes=['grpo']", "flywheel.rl_reward='user_signal_thumbs'"]},
    ),
    "emoji_removal": Experiment(
        "Strip emoji from training histories: expect the child to reintroduce what the reward no longer "
        "sees (paper 7.5 history bias).",
        {"keep_emoji": ["train.strip_history_features=[]"],
         "strip_emoji": ["train.strip_history_features=['emoji']", "evaluate.reward_stripped_features=['emoji']"]},
    ),
}

COLUMNS = ["variant", "seed", "rm win vs parent", "annotator win vs parent", "truth dP(continue)",
           "IF rate", "violation rate", "flagged style", "depth lift", "gates"]


def _value(figure: Any) -> float | None:
    return figure.get("value") if isinstance(figure, dict) else None


def result_row(variant: str, seed: int, run_dir: Path, generation: int) -> list[Any]:
    summary = json.loads((run_dir / f"gen-{generation}" / artifacts.SUMMARY).read_text())
    offline = summary.get("offline", {})
    wins = offline.get("win_rate_vs_parent") or {}
    truth = summary.get("truth", {}).get("landscape_p_continue", {})
    delta = truth["child"] - truth["parent"] if {"child", "parent"} <= set(truth) else None
    style = offline.get("style", {})
    flagged = style.get("flagged") if isinstance(style, dict) else None
    return [variant, seed, _value(wins.get("reward_model")), _value(wins.get("annotators")), delta,
            _value((offline.get("instruction_following") or {}).get("child")),
            _value((offline.get("violation_rate") or {}).get("child")),
            ", ".join(flagged) if isinstance(flagged, list) else flagged,
            _value(summary.get("ab", {}).get("depth_lift")),
            {True: "pass", False: "fail"}.get(summary.get("gates", {}).get("passed"), "")]


def run_experiment(name: str, base: Config, seeds: int, generations: int,
                   run: Callable[[Config, int], Path], overrides: tuple[str, ...] = ()) -> Path:
    """Run every variant x seed with ``run(config, generations)``; returns the results file."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment '{name}': unknown, choose one of {', '.join(EXPERIMENTS)}")
    experiment = EXPERIMENTS[name]
    rows = []
    for variant, changes in experiment.variants.items():
        for seed in range(seeds):
            data = base.model_dump(mode="json")
            runs_dir = str(base.run_dir() / "experiments" / name)
            config = _with_overrides(data, [*overrides, *changes, f"seed={base.seed + seed}",
                                            f"name={variant}-seed{seed}", f"runs_dir='{runs_dir}'"])
            run_dir = run(config, generations)
            rows.append(result_row(variant, base.seed + seed, run_dir, generations))
    out = base.run_dir() / "experiments" / f"{name}.json"
    write_json(out, {"name": name, "description": experiment.description, "columns": COLUMNS, "rows": rows})
    return out


def _with_overrides(data: dict[str, Any], overrides: list[str]) -> Config:
    from characterflywheel.config import Config, _deep_merge, parse_override

    for override in overrides:
        data = _deep_merge(data, parse_override(override))
    return Config.model_validate(data)
