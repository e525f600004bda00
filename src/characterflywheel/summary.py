"""One ``gen-<n>/summary.json`` per generation, gathered from its stages' outputs for the report.

The summary is derived data: it is rewritten after every generation (and by ``report``) from the
stage folders, so it never disagrees with them. Missing stages leave their section out.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json
from characterflywheel.deploy.decision import Decision, read_decision
from characterflywheel.evaluate.ab import lift
from characterflywheel.runs import MANIFEST, RunDir


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _metrics(run: RunDir, generation: int, stage: str) -> dict[str, float]:
    return (run.manifest(generation, stage) or {}).get("metrics", {})


def _seconds(manifest: dict[str, Any]) -> float | None:
    try:
        began = dt.datetime.fromisoformat(manifest["started_at"])
        ended = dt.datetime.fromisoformat(manifest["finished_at"])
    except (KeyError, ValueError):
        return None
    return (ended - began).total_seconds()


def _pick(source: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: source[key] for key in keys if key in source}


def _ab(decision: Decision | None, ab: dict[str, Any] | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    out: dict[str, Any] = {"control": None if decision.promoted else decision.champion_version,
                           "treatment": decision.challenger_version, "promoted": decision.promoted,
                           "reason": decision.reason}
    if ab:
        out["breadth_lift"] = lift(ab, "breadth")
        out["depth_lift"] = lift(ab, "depth")
        out["arms"] = ab.get("arms", {})
    return out


def _vs_generation0(decision: Decision | None, ab: dict[str, Any] | None) -> dict[str, Any] | None:
    """Each served model's lift over the holdout arm (generation 0), per engagement metric."""
    if not ab or not decision:
        return None
    versions = decision.arms
    return {arm: {"model_version": versions.get(arm), "breadth_lift": lift(ab, "breadth", arm),
                  "depth_lift": lift(ab, "depth", arm)}
            for arm in ab.get("challengers", {})}


def generation_summary(run_root: Path, generation: int, elapsed: float | None = None) -> dict[str, Any]:
    run = RunDir(run_root)
    gen_dir = run.generation_dir(generation)
    curate = _metrics(run, generation, "curate")
    annotate = _metrics(run, generation, "annotate")
    sample = _metrics(run, generation, "sample")
    deploy = _metrics(run, generation, "deploy")
    decision_path = gen_dir / "deploy" / artifacts.DECISION
    decision = read_decision(decision_path) if decision_path.is_file() else None
    counts = {
        "traffic_conversations": deploy.get("traffic_accepted") if generation == 0 else
        _metrics(run, generation - 1, "deploy").get("traffic_accepted"),
        **{key: curate[key] for key in curate if key.split(".")[-1] in {
            "prompts", "privacy_kept", "privacy_masked", "privacy_dropped", "diverse", "curated", "heldout"}},
        "annotations": annotate.get("annotations"),
        "sft": sample.get("sft"), "prefs": sample.get("prefs"),
    }
    served_arms = decision.arms if decision else {}
    summary: dict[str, Any] = {
        "generation": generation,
        "model_version": f"gen-{generation}",
        # the champion going into the generation (the decision's champion is the one coming out of it)
        "parent_version": None if generation == 0 or not decision else decision.parent_version,
        "served": bool(decision) and (generation == 0 or served_arms.get("challenger") == f"gen-{generation}"),
        "promoted": generation > 0 and bool(decision and decision.promoted),
        "champion_version": decision.champion_version if decision else ("gen-0" if generation == 0 else None),
        "data_counts": {k: v for k, v in counts.items() if v is not None},
        "stage_seconds": {},
    }
    for stage in run.completed_stages(generation):
        manifest = _json(gen_dir / stage / MANIFEST) or {}
        seconds = _seconds(manifest)
        if seconds is not None:
            summary["stage_seconds"][stage] = seconds
    if elapsed is not None:
        summary["elapsed_seconds"] = elapsed
    reward = _json(gen_dir / "reward" / artifacts.METRICS)
    if reward:
        summary["reward_models"] = reward
    offline = _json(gen_dir / "evaluate" / artifacts.OFFLINE)
    if offline:
        summary["offline"] = offline
        if "style" in offline:
            summary["style"] = offline["style"]
        if "history_bias" in offline:
            summary["history_bias"] = offline["history_bias"]
    gates = _json(gen_dir / "gate" / artifacts.GATES)
    if gates:
        summary["gates"] = gates
    ab = _ab(decision, _json(gen_dir / "deploy" / artifacts.AB))
    if ab:
        summary["ab"] = ab
    vs_generation0 = _vs_generation0(decision, _json(gen_dir / "deploy" / artifacts.VS_GENERATION0 / artifacts.AB))
    if vs_generation0:
        summary["vs_generation0"] = vs_generation0
    truth = _json(gen_dir / "evaluate" / artifacts.TRUTH)
    if truth:
        summary["truth"] = truth
    return summary


def write_generation_summary(run_root: Path, generation: int, elapsed: float | None = None) -> Path:
    path = RunDir(run_root).generation_dir(generation) / artifacts.SUMMARY
    summary = generation_summary(run_root, generation, elapsed)
    previous = _json(path) or {}
    if elapsed is None and "elapsed_seconds" in previous:
        summary["elapsed_seconds"] = previous["elapsed_seconds"]
    write_json(path, summary)
    return path
