"""Herding: move the policy with this generation's data and rewards (the paper's 3.2 and 5.2).

Four recipes, each a top-to-bottom function over TRL 1.16 trainers and PEFT 0.21 (no hand-written
losses). Every one loads the parent (any model spec: ``embedded:...`` or an HF folder), trains in
``work_dir`` (checkpoints every ``save_steps``; a re-run resumes from the newest complete one), saves
the child as an HF folder (weights with any LoRA adapter merged, tokenizer + chat template,
generation config) into ``out_dir`` and returns a flat ``dict[str, float]`` of metrics for the
lead to log to MLflow (``report_to`` is "none" inside)::

    run_sft(parent, dataset_path, out_dir, settings, work_dir, progress=False) -> dict
    run_dpo(parent, prefs_path, out_dir, settings, work_dir, progress=False) -> dict
    run_online_dpo(parent, prompts_path, reward_fn, out_dir, settings, work_dir, progress=False) -> dict
    run_grpo(parent, prompts_path, reward_fn, out_dir, settings, work_dir, progress=False) -> dict
    run_herding(parent, plan, inputs, out_dir, settings, work_dir, reward_fn=None, progress=False) -> dict
    run_herding_in_own_process(...same arguments...) -> dict

``reward_fn(prompts, completions) -> list[float]`` is the RewardJudge's ``as_reward_fn()``; the
user-signal model is refused as an RL reward (``common.check_reward_fn``).

``run_herding`` chains the plan (``settings.recipes``, default ``["sft", "dpo"]``): each child is the
next recipe's parent; intermediates go to ``out_dir/<recipe>/``, the final child is copied to
``out_dir/model/`` and the intermediates' weights are then deleted (their metrics stay). A step whose
data file has no rows is skipped (``skipped_no_data``): its parent passes on unchanged. A recipe whose ``out_dir/<recipe>/metrics.json`` exists is skipped on a re-run,
so a killed chain continues with the recipe it was in (which resumes from its checkpoint).

Scale-out (GPU cluster; on this CPU everything runs single-process)::

    accelerate launch --config_file configs/accelerate_deepspeed_zero2.yaml \\
        -m characterflywheel.train sft --parent embedded:smollm2-135m-instruct \\
        --data runs/demo/sft.jsonl --out runs/demo/child --work-dir runs/demo/work/sft \\
        --set sft_batch_size=16 --set mixed_precision=bf16

(``pip install deepspeed`` on the cluster; edit ``num_processes`` in the YAML to the GPU count.)
GRPO / Online DPO take ``--reward-model DIR`` (the reward stage's output, loaded with
``characterflywheel.reward.load_judge``); ``--set rollout_backend=vllm_server --set
vllm_server_base_url=http://HOST:8000`` moves rollouts to a ``trl vllm-serve`` server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json
from characterflywheel.models import is_adapter_folder, resolve_model
from characterflywheel.train.settings import RECIPES, TrainConfig

if TYPE_CHECKING:
    from characterflywheel.train.common import RewardFn

INPUT_KEYS = {"sft": "sft", "dpo": "preferences", "online_dpo": "prompts", "grpo": "prompts"}
"""Which ``inputs`` entry each recipe reads: the SFT set, the preference set, or the prompts set."""

FINAL_MODEL_DIR = "model"


def run_recipe(
    recipe: str,
    parent: str | Path,
    data_path: Path,
    out_dir: Path,
    settings: TrainConfig,
    work_dir: Path,
    reward_fn: RewardFn | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Run one recipe by name (imports its trainer only when used)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe '{recipe}'; choose one of {', '.join(RECIPES)}")
    if recipe == "sft":
        from characterflywheel.train.sft import run_sft

        return run_sft(parent, data_path, out_dir, settings, work_dir, progress)
    if recipe == "dpo":
        from characterflywheel.train.dpo import run_dpo

        return run_dpo(parent, data_path, out_dir, settings, work_dir, progress)
    if reward_fn is None:
        raise ValueError(f"recipe '{recipe}' needs a reward_fn (the RewardJudge's as_reward_fn())")
    if recipe == "online_dpo":
        from characterflywheel.train.online_dpo import run_online_dpo

        return run_online_dpo(parent, data_path, reward_fn, out_dir, settings, work_dir, progress)
    from characterflywheel.train.grpo import run_grpo

    return run_grpo(parent, data_path, reward_fn, out_dir, settings, work_dir, progress)


def _step_names(plan: list[str]) -> list[str]:
    """Folder names for the plan's steps: the recipe name, suffixed when a recipe repeats."""
    seen: dict[str, int] = {}
    names = []
    for recipe in plan:
        seen[recipe] = seen.get(recipe, 0) + 1
        names.append(recipe if seen[recipe] == 1 else f"{recipe}_{seen[recipe]}")
    return names


def run_herding(
    parent: str | Path,
    plan: list[str],
    inputs: dict[str, Path],
    out_dir: Path,
    settings: TrainConfig,
    work_dir: Path,
    reward_fn: RewardFn | None = None,
    progress: bool = False,
    own_processes: bool = False,
) -> dict[str, float]:
    """Chain ``plan``'s recipes; returns ``{"<step>/<metric>": value}`` and leaves the final child
    in ``out_dir/model``. ``inputs`` maps ``sft`` / ``preferences`` / ``prompts`` to JSONL files.
    ``own_processes``: each recipe trains in a fresh process of its own (``in_own_process``)."""
    if not plan:
        raise ValueError("train.recipes: empty plan")
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    metrics: dict[str, float] = {}
    current: str | Path = parent
    for recipe, name in zip(plan, _step_names(plan), strict=True):
        key = INPUT_KEYS.get(recipe)
        if key is None:
            raise ValueError(f"train.recipes: unknown recipe '{recipe}'; choose from {', '.join(RECIPES)}")
        if key not in inputs:
            raise ValueError(f"recipe '{recipe}' needs inputs['{key}']")
        child = out_dir / name
        done = child / artifacts.METRICS
        if done.is_file():
            step_metrics = json.loads(done.read_text())
        elif not _has_rows(Path(inputs[key])):  # e.g. every candidate was cut off: nothing to learn here
            child.mkdir(parents=True, exist_ok=True)
            step_metrics = {"skipped_no_data": 1.0}
            write_json(done, step_metrics)
        else:
            args = (recipe, current, Path(inputs[key]), child, settings, work_dir / name, reward_fn, progress)
            step_metrics = in_own_process(run_recipe, *args) if own_processes else run_recipe(*args)
            write_json(done, step_metrics)
        metrics.update({f"{name}/{metric}": value for metric, value in step_metrics.items()})
        if not step_metrics.get("skipped_no_data"):
            current = child
    final = out_dir / FINAL_MODEL_DIR
    source = Path(current) if current != parent else resolve_model(parent)  # every step skipped: the parent
    if _holds_model(source):  # else a re-run after the copy: the weights are in final
        if final.exists():
            shutil.rmtree(final)
        shutil.copytree(source, final, ignore=shutil.ignore_patterns(artifacts.METRICS))
    if not is_adapter_folder(final):  # an adapter child stands on the intermediate ones: they stay (MBs)
        for name in _step_names(plan):  # full copies: only the next step's parents
            drop_weights(out_dir / name)
    return metrics


def run_herding_in_own_process(*args: Any, **kwargs: Any) -> dict[str, float]:
    """``run_herding`` with every recipe in a fresh (spawned) Python process of its own.

    Why: a long-lived process that has run the earlier stages keeps their freed heap, and a trainer's
    peak lands on top of it (the demo's LoRA SFT + DPO: 7.0 GB peak RSS in the run process); and one
    process for the whole chain keeps SFT's freed heap under DPO's peak (5.1 GB for SFT then DPO
    against 3.6 GB for SFT and 3.9 GB for DPO each alone). A process per recipe hands everything
    back when it ends. The arguments must pickle: a ``reward_fn`` is a module-level callable or
    object, not a closure."""
    return run_herding(*args, **kwargs, own_processes=True)


def in_own_process(function: Any, *args: Any) -> Any:
    """``function(*args)`` in a fresh spawned process; its exceptions are raised here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _holds_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() or is_adapter_folder(folder)


def _has_rows(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        return any(line.strip() for line in handle)


def drop_weights(step_dir: Path) -> None:
    """Keep a finished step's ``metrics.json`` (a re-run skips it) and drop its model files: the chain's
    children are full model copies, and only the final one (``model/``) is used after the chain."""
    for path in step_dir.iterdir() if step_dir.is_dir() else ():
        if path.name == artifacts.METRICS:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()


__all__ = ["INPUT_KEYS", "run_herding", "run_recipe"]
