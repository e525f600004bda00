"""Promotion rules and summaries of the flywheel loop, on hand-made A/B read-outs; the deploy stage
on scripted traffic."""

import json

from characterflywheel.config import load_config
from characterflywheel.evaluate.ab import lift
from characterflywheel.artifacts import VS_GENERATION0
from characterflywheel.flywheel import HOLDOUT_ARM, deploy_stage, flat_numbers, promotion_decision
from characterflywheel.runs import StageContext
from characterflywheel.summary import generation_summary


def ab(breadth: tuple[float, float, float, float], depth: tuple[float, float, float, float], verdict: str) -> dict:
    def entry(values):
        control, challenger, lo, hi = values
        return {"control": control, "challenger": challenger, "lift": challenger / control - 1, "ci_lo": lo, "ci_hi": hi}

    return {"arms": {"challenger": {"users": 40}},
            "challengers": {"challenger": {"breadth": entry(breadth), "depth": entry(depth), "verdict": verdict,
                                           "reasons": ["because"], "guardrails": []}}}


def test_point_rule_promotes_when_engagement_rises_and_nothing_drops():
    ok, reason = promotion_decision(ab((0.2, 0.25, -0.1, 0.4), (2.0, 2.2, -0.05, 0.3), "inconclusive"), "point")
    assert ok and "breadth +25.0%" in reason  # relative, as everywhere else


def test_every_rule_gives_the_ab_reasons_with_its_verdict():
    read_out = ab((0.2, 0.25, -0.1, 0.4), (2.0, 2.2, -0.05, 0.3), "inconclusive")
    read_out["challengers"]["challenger"]["reasons"] = ["breadth: bootstrap CI spans zero", "depth: below the MDE"]
    for rule in ("point", "ci", "guardrail"):
        reason = promotion_decision(read_out, rule)[1]
        assert "verdict inconclusive: breadth: bootstrap CI spans zero; depth: below the MDE" in reason, rule


def test_point_rule_refuses_a_drop_in_either_metric():
    assert not promotion_decision(ab((0.2, 0.25, -0.1, 0.4), (2.0, 1.9, -0.2, 0.1), "inconclusive"), "point")[0]


def test_no_ship_verdict_always_blocks():
    ok, reason = promotion_decision(ab((0.2, 0.3, 0.1, 0.6), (2.0, 2.5, 0.1, 0.4), "no-ship"), "point")
    assert not ok and "no-ship" in reason


def test_ci_rule_needs_a_ship_verdict():
    assert not promotion_decision(ab((0.2, 0.25, -0.1, 0.4), (2.0, 2.2, -0.05, 0.3), "inconclusive"), "ci")[0]
    assert promotion_decision(ab((0.2, 0.3, 0.1, 0.6), (2.0, 2.5, 0.1, 0.4), "ship"), "ci")[0]


def test_guardrail_rule_ships_unless_the_ab_finds_harm():
    ok, reason = promotion_decision(ab((0.2, 0.19, -0.3, 0.2), (2.0, 1.9, -0.2, 0.1), "inconclusive"), "guardrail")
    assert ok and "no harm" in reason
    assert not promotion_decision(ab((0.2, 0.1, -0.6, -0.1), (2.0, 2.0, -0.1, 0.1), "no-ship"), "guardrail")[0]


def test_flat_numbers_keeps_numbers_and_booleans_only():
    flat = flat_numbers({"a": {"b": 1, "c": "x", "d": True, "e": float("nan")}, "f": 2.5})
    assert flat == {"a.b": 1.0, "a.d": 1.0, "f": 2.5}


def test_lift_reports_the_estimate_the_verdict_reads():
    read_out = ab((0.2, 0.25, -0.1, 0.6), (2.0, 2.2, -0.05, 0.3), "inconclusive")
    depth = read_out["challengers"]["challenger"]["depth"]
    assert lift(read_out, "depth")["lo"] == -0.05 and lift(read_out, "depth")["estimate"] is None
    depth |= {"primary": "cuped", "mde": 0.4,
              "cuped": {"lift": 0.09, "ci_lo": -0.02, "ci_hi": 0.2, "boot_ci_lo": -0.03, "boot_ci_hi": 0.21}}
    shown = lift(read_out, "depth")
    assert (shown["value"], shown["lo"], shown["hi"], shown["boot_lo"]) == (0.09, -0.02, 0.2, -0.03)
    assert shown["estimate"] == "cuped" and shown["mde"] == 0.4 and shown["control"] == 2.0 and shown["n"] == 40


# --------------------------------------------------------------------------- the deploy stage and its holdout arm


class ScriptedTraffic:
    """An environment whose users engage by the model version they are served (no models, no world):
    ``turns[version]`` user turns per session, sticky arms by the gateway's own hash."""

    def __init__(self, turns: dict[str, int], users: int = 90) -> None:
        self.turns, self.users = turns, users
        self.served: list = []
        self.scales: list[float] = []

    def collect_traffic(self, config, arms, out_dir, generation, scale=1.0):
        from characterflywheel.deploy.gateway import route

        self.served.append(arms)
        self.scales.append(scale)
        with (out_dir / "traffic.jsonl").open("w") as out:
            for i in range(self.users):
                served = route(f"u{i}", arms)
                arm, version = served.name, served.model_version
                messages = [m for t in range(self.turns[version] + i % 2) for m in (
                    {"role": "user", "content": f"hi {t}"}, {"role": "assistant", "content": f"hello {t}"})]
                out.write(json.dumps({"conversation_id": f"g{generation}-u{i}", "user_id": f"u{i}",
                                      "character_id": "nobody", "model_version": version, "arm": arm,
                                      "started_at": "2026-11-24T10:00:00Z", "messages": messages}) + "\n")
        return {"sessions": float(self.users)}


def deploy(tmp_path, env, holdout_weight: float, challenger=("child", "gen-2")):
    config = load_config(preset="tiny", overrides=[f"flywheel.holdout_weight={holdout_weight}", "ab.bootstrap=50"])
    out = tmp_path / "gen-2" / "deploy"  # a run directory's layout, for generation_summary
    out.mkdir(parents=True)
    stage = deploy_stage(config, env, 2, ("parent", "gen-1"), challenger, ("base", "gen-0"))
    stage(StageContext("deploy", 2, out, tmp_path / "work", {}, {}))
    return out, json.loads((out / "decision.json").read_text())


def test_holdout_arm_serves_generation_0_and_reads_every_arm_against_it(tmp_path):
    env = ScriptedTraffic({"gen-0": 1, "gen-1": 2, "gen-2": 3})
    out, decision = deploy(tmp_path, env, holdout_weight=1.0)
    assert [(a.name, a.model, a.model_version) for a in env.served[0]] == [
        ("champion", "parent", "gen-1"), ("challenger", "child", "gen-2"), (HOLDOUT_ARM, "base", "gen-0")]
    assert decision["arms"] == {"champion": "gen-1", "challenger": "gen-2", HOLDOUT_ARM: "gen-0"}
    vs_base = json.loads((out / VS_GENERATION0 / "ab.json").read_text())
    assert vs_base["control_arm"] == HOLDOUT_ARM
    assert lift(vs_base, "depth", "challenger")["value"] > lift(vs_base, "depth", "champion")["value"] > 0
    assert decision["promoted"]  # gen-2 engages more than gen-1 in the champion-vs-challenger read-out
    summary = generation_summary(tmp_path, 2)["vs_generation0"]
    assert summary["challenger"]["model_version"] == "gen-2" and summary["champion"]["model_version"] == "gen-1"
    assert summary["challenger"]["depth_lift"]["lo"] > 0 and summary["challenger"]["depth_lift"]["mde"] > 0


def test_holdout_weight_sets_the_split_the_srm_check_expects(tmp_path):
    env = ScriptedTraffic({"gen-0": 2, "gen-1": 2, "gen-2": 2}, users=240)
    out, _ = deploy(tmp_path, env, holdout_weight=0.25)
    srm = json.loads((out / VS_GENERATION0 / "ab.json").read_text())["srm"]
    users = srm["observed"]
    assert users[HOLDOUT_ARM] < users["champion"] / 2  # a quarter-weight arm gets ~ a quarter of the champion's users
    assert srm["expected_share"][HOLDOUT_ARM] == 0.25 / 2.25 and not srm["mismatch"]


def test_no_holdout_arm_by_default_and_no_read_out_against_generation_0(tmp_path):
    env = ScriptedTraffic({"gen-0": 1, "gen-1": 2, "gen-2": 3})
    out, decision = deploy(tmp_path, env, holdout_weight=0.0)
    assert [a.name for a in env.served[0]] == ["champion", "challenger"]
    assert not (out / VS_GENERATION0).exists() and HOLDOUT_ARM not in decision["arms"]


def test_a_challenger_without_users_is_not_read_out(tmp_path):
    env = ScriptedTraffic({"gen-0": 1, "gen-1": 2, "gen-2": 3}, users=1)
    _, decision = deploy(tmp_path, env, holdout_weight=0.0)
    assert not decision["promoted"] and "no A/B read-out" in decision["reason"]


def test_the_online_rl_reward_crosses_to_herding_s_own_process_unloaded(tmp_path):
    import pickle

    from characterflywheel.flywheel import RewardFromModels

    reward = RewardFromModels(load_config(preset="tiny"), tmp_path / "reward")
    copy = pickle.loads(pickle.dumps(reward))  # what run_herding_in_own_process sends
    assert copy.reward_dir == tmp_path / "reward" and "_reward" not in copy.__dict__  # models load on first call


def test_only_the_run_s_last_window_is_scaled_up(tmp_path, monkeypatch):
    """``flywheel.final_window_scale`` reaches the environment for the last generation's window only."""
    import characterflywheel.flywheel as flywheel
    import characterflywheel.summary as summary

    seen = []
    monkeypatch.setattr(flywheel, "run_generation_zero", lambda config, env, stage: None)
    monkeypatch.setattr(flywheel, "run_generation", lambda config, env, generation, stage, final=False:
                        seen.append((generation, final)))
    monkeypatch.setattr(summary, "write_generation_summary", lambda root, generation, elapsed: None)
    config = load_config(preset="tiny", overrides=[f"runs_dir={tmp_path}", "flywheel.final_window_scale=3"])
    flywheel.run_flywheel(config, ScriptedTraffic({}), generations=3)
    assert seen == [(1, False), (2, False), (3, True)]

    env = ScriptedTraffic({"gen-0": 1, "gen-1": 2, "gen-2": 3})
    out = tmp_path / "gen-2" / "deploy"
    out.mkdir(parents=True)
    deploy_stage(config, env, 2, ("parent", "gen-1"), ("child", "gen-2"), ("base", "gen-0"), scale=3.0)(
        StageContext("deploy", 2, out, tmp_path / "work", {}, {}))
    assert env.scales == [3.0]


def test_the_last_window_takes_the_final_promote_rule_when_one_is_set():
    from characterflywheel.flywheel import window_promote_rule

    config = load_config(preset="demo")
    assert config.flywheel.promote_rule == "guardrail" and config.flywheel.final_promote_rule is None
    assert window_promote_rule(config, final=False) == window_promote_rule(config, final=True) == "guardrail"
    chosen = load_config(preset="demo", overrides=["flywheel.final_promote_rule=point"])
    assert window_promote_rule(chosen, final=True) == "point" and window_promote_rule(chosen, final=False) == "guardrail"


def test_a_last_window_under_point_that_cannot_tell_the_arms_apart_keeps_the_champion(tmp_path):
    """Under ``guardrail`` an A/B without a difference promotes the child; a last window read by
    ``final_promote_rule = point`` keeps the champion on the same traffic."""
    config = load_config(preset="tiny", overrides=["ab.bootstrap=50", "flywheel.promote_rule=guardrail",
                                                   "flywheel.final_promote_rule=point"])
    decisions = {}
    for final, scale in ((False, 1.0), (True, 3.0)):
        out = tmp_path / f"gen-2-{final}" / "deploy"
        out.mkdir(parents=True)
        deploy_stage(config, ScriptedTraffic({"gen-1": 2, "gen-2": 2}), 2, ("parent", "gen-1"), ("child", "gen-2"),
                     ("base", "gen-0"), scale=scale, final=final)(
            StageContext("deploy", 2, out, tmp_path / "work", {}, {}))
        decisions[final] = json.loads((out / "decision.json").read_text())
    assert decisions[False]["promoted"] and "no harm" in decisions[False]["reason"]
    assert not decisions[True]["promoted"] and decisions[True]["champion_version"] == "gen-1"
    assert decisions[True]["reason"].startswith("last window (x3), promote rule point: point estimates")


def test_a_window_nobody_would_read_is_not_served(tmp_path):
    """The run's last window after a child stopped at its gates (no holdout): the decision, no traffic."""
    config = load_config(preset="tiny", overrides=["ab.bootstrap=50"])
    env = ScriptedTraffic({"gen-1": 2})
    out = tmp_path / "gen-2" / "deploy"
    out.mkdir(parents=True)
    deploy_stage(config, env, 2, ("parent", "gen-1"), None, ("base", "gen-0"), serve=False)(
        StageContext("deploy", 2, out, tmp_path / "work", {}, {}))
    decision = json.loads((out / "decision.json").read_text())
    assert env.served == [] and not (out / "traffic.jsonl").exists()
    assert decision["promoted"] is False and decision["champion_version"] == "gen-1"
    assert "no window served" in decision["reason"]


def test_the_annotate_stage_keeps_earlier_generations_annotations_and_adds_its_own(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import characterflywheel.flywheel as flywheel
    from characterflywheel.artifacts import ANNOTATIONS
    from characterflywheel.data.annotation import Annotation, read_annotations
    from characterflywheel.data.jsonl import write_jsonl

    def labelled(task_id: str, rating: int) -> Annotation:
        return Annotation(task_id=task_id, kind="rating", character_id="pirate-ann", annotator_id="a1",
                          messages=[{"role": "user", "content": "hey"}], responses=["Arr!"], label={"rating": rating})

    def run_annotate(curated, out_dir, settings, candidates, filler, seed):
        write_jsonl(out_dir / ANNOTATIONS, [labelled("g2/rate-0", 4), labelled("g2/rate-1", 2)])
        return SimpleNamespace(tasks=2, annotations=2, agreement={})

    monkeypatch.setattr(flywheel, "read_curated_prompts", lambda path: [])
    monkeypatch.setattr(flywheel, "backend_for", lambda config, model: None)
    monkeypatch.setattr(flywheel, "generate_candidates", lambda records, backend, sampling, progress: [])
    monkeypatch.setattr(flywheel, "run_annotate", run_annotate)
    previous = tmp_path / "gen-1" / ANNOTATIONS
    write_jsonl(previous, [labelled("g1/rate-0", 5)])
    out = tmp_path / "gen-2"
    context = StageContext("annotate", 2, out, tmp_path / "work", {"curated": tmp_path / "curated.jsonl",
                                                                   "previous": previous}, {})
    people = SimpleNamespace(fill_annotations=lambda tasks: [])
    flywheel.annotate_stage(load_config(preset="tiny"), people, "parent")(context)
    assert [a.task_id for a in read_annotations(out / ANNOTATIONS)] == ["g1/rate-0", "g2/rate-0", "g2/rate-1"]
    assert context.metrics["annotations_total"] == 3


def test_the_stage_runner_announces_each_stage_before_it_runs_and_reports_it_after(tmp_path):
    from characterflywheel.pipeline import StageRunner

    config = load_config(preset="tiny", overrides=[f"runs_dir={tmp_path}", "tracking.mlflow=false"])
    heard: list[tuple] = []

    def work(context: StageContext) -> None:
        heard.append(("ran", context.name))

    stage = StageRunner(config, 1, notify=lambda result: heard.append(("done", result.name, result.skipped)),
                        starting=lambda generation, name: heard.append(("starting", generation, name)))
    stage("curate", work)
    stage("curate", work)  # finished: skipped, still announced
    assert heard == [("starting", 1, "curate"), ("ran", "curate"), ("done", "curate", False),
                     ("starting", 1, "curate"), ("done", "curate", True)]
