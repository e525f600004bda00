"""The demo on the real embedded models (tiny preset): every stage runs, and a re-run skips them all."""

import json
from pathlib import Path

import pytest

from characterflywheel.config import ArmConfig, load_config
from characterflywheel.demo import SimulatedEnvironment, build_world, run_demo

STAGES = ["seed", "ingest", "generate", "headroom", "simulate", "traffic", "ab"]


@pytest.mark.slow
def test_tiny_demo_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    config = load_config(preset="tiny", overrides=[f"runs_dir={tmp_path}", "tracking.mlflow=true"])
    results = run_demo(config)
    assert [r.name for r in results] == STAGES and not any(r.skipped for r in results)
    by_name = {r.name: r for r in results}

    replies = [json.loads(line) for line in (by_name["generate"].out_dir / "replies.jsonl").read_text().splitlines()]
    assert len(replies) == config.demo.prompts and all(r["replies"][0].strip() for r in replies)

    headroom = json.loads((by_name["headroom"].out_dir / "headroom.json").read_text())
    assert headroom["best_of_k_p_continue"] >= headroom["random_of_k_p_continue"]

    simulated = json.loads((by_name["simulate"].out_dir / "simulation.json").read_text())
    ingest_counts = by_name["traffic"].manifest["metrics"]
    assert ingest_counts["quarantined"] == 0
    assert ingest_counts["read"] == ingest_counts["accepted"] == simulated["sessions"]
    assert simulated["gateway_served"] == simulated["requests"]

    ab = json.loads((by_name["ab"].out_dir / "ab.json").read_text())
    assert set(ab["arms"]) == {"control", "cool"} and (by_name["ab"].out_dir / "ab.png").is_file()
    assert (tmp_path / "tiny" / "mlflow.db").is_file()

    again = run_demo(config)
    assert all(r.skipped for r in again)


@pytest.mark.slow
def test_a_window_in_its_own_process_serves_every_user_and_the_run_process_builds_no_world(tmp_path: Path) -> None:
    """``world.own_process`` (the demo's default): the window's gateway, arms and users live in a spawned
    process, which builds the same world from the config; x 2 brings as many newcomers."""
    config = load_config(preset="tiny", overrides=[f"runs_dir={tmp_path}", "world.own_process=true",
                                                   "world.users=3", "world.days=1"])
    env = SimulatedEnvironment(config)
    arms = [ArmConfig(name="champion", model_version="gen-1")]
    metrics = env.collect_traffic(config, arms, tmp_path / "window", generation=1, scale=2.0)

    logged = [json.loads(line) for line in (tmp_path / "window" / "traffic.jsonl").read_text().splitlines()]
    assert metrics["sessions"] == len(logged) == 6  # day 0: every user, the three regulars and three newcomers
    assert metrics["gateway_served"] == metrics["requests"] >= 6
    assert all(c["arm"] == "champion" and c["conversation_id"].startswith("g1-") for c in logged)
    regulars = {user.user_id for user in build_world(config).users}
    assert len(regulars & {c["user_id"] for c in logged}) == 3
    assert env._world is None  # nothing of the world was built in the run process
