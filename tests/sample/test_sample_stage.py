"""The ``runs`` adapter of the pre-herding sampling stage: inputs, params, outputs and metrics.

The reward package is replaced by a stand-in module exposing the contract's loaders, and the
backend by scripted replies, so this checks the wiring only (the real policy runs in
test_sample_real_policy.py)."""

from __future__ import annotations

import json
import math
import sys
import types

import characterflywheel
from sample_fakes import EmbeddedScoreJudge, EmbeddedSignal, ScriptedBackend, prompt_record, reply

from characterflywheel.runs import RunDir
from characterflywheel.sample import stage
from characterflywheel.data.jsonl import write_jsonl

SCRIPT = {
    "a": [reply("x", 0.9, 0.1), reply("y", 0.6, 0.9), reply("z", 0.1, 0.5)],
    "b": [reply("x", 0.5, 0.5), reply("y", 0.5, 0.5), reply("z", 0.5, 0.5)],
    "c": [reply("x", 0.8, 0.5), reply("y", 0.2, 0.5), reply("z", 0.3, 0.5)],
    "d": [reply("x", 0.4, 0.5), reply("y", 0.45, 0.5), reply("z", 0.41, 0.5)],
}


def test_stage_adapter_runs_in_a_run_directory(tmp_path, monkeypatch):
    loaded: dict[str, object] = {}
    fake_reward = types.ModuleType("characterflywheel.reward")

    def load_judge(path, pairwise_weight):
        loaded["judge"] = (path, pairwise_weight)
        return EmbeddedScoreJudge()

    def load_user_signal(path):
        loaded["user_signal"] = path
        return EmbeddedSignal()

    fake_reward.load_judge, fake_reward.load_user_signal = load_judge, load_user_signal
    monkeypatch.setitem(sys.modules, "characterflywheel.reward", fake_reward)
    monkeypatch.setattr(characterflywheel, "reward", fake_reward, raising=False)
    backends: list[tuple[str, str]] = []

    def make_backend(kind, spec, batch_size):
        backends.append((kind, str(spec)))
        return ScriptedBackend(str(spec), lambda line: SCRIPT[line])

    monkeypatch.setattr(stage, "make_backend", make_backend)

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [prompt_record(f"p-{line}", line) for line in SCRIPT])
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "weights.txt").write_text("stand-in")
    (tmp_path / "signal").mkdir()
    (tmp_path / "signal" / "weights.txt").write_text("stand-in")
    params = {
        "pool": ["current-model"], "backend": "fast", "batch_size": 4, "parent_win_rate": 0.6,
        "sample": {"k": 3, "tau_quantile": None, "tau": 0.4, "min_margin": 0.1, "hard_count": 2,
                   "user_signal_weight": 0.75},
    }
    result = RunDir(tmp_path / "run").run_stage(
        1, "sample", stage.pre_herding_sampling_stage,
        inputs={"prompts": prompts, "judge": tmp_path / "rm", "user_signal": tmp_path / "signal"}, params=params,
    )
    assert loaded == {"judge": (tmp_path / "rm", 0.5), "user_signal": tmp_path / "signal"}
    assert backends == [("fast", "current-model")]
    files = set(result.manifest["outputs"])
    assert {"sft.jsonl", "prefs.jsonl", "candidates.jsonl", "report.json", "hard_prompts.jsonl"} <= files
    metrics = result.manifest["metrics"]
    assert metrics["sample.candidates"] == 12.0 and metrics["sample.user_signal_active"] == 1.0
    assert metrics["sample.kept"] == 2 + 3 + 1 + 3
    assert metrics["sample.hard_prompts"] == 2.0
    assert not math.isnan(metrics["sample.hard.overlap_jaccard"])
    hard = [json.loads(line)["prompt_id"] for line in (result.out_dir / "hard_prompts.jsonl").read_text().splitlines()]
    assert hard == ["p-a", "p-c"]  # highest variance of judge scores
    # Re-ranking is on (0.6 < 0.65): for p-a, y (0.6, P(continue) 0.9) beats x (0.9, 0.1) at weight 0.75.
    sft = {r["prompt_id"]: r for r in map(json.loads, (result.out_dir / "sft.jsonl").read_text().splitlines())}
    assert sft["p-a"]["score"] == 0.6 and sft["p-c"]["score"] == 0.8


def test_card_rule_check_counts_the_broken_rules_of_the_shipped_cards():
    from characterflywheel.sample.stage import card_rule_check

    broken_rules = card_rule_check()

    def record(character_id, line="hello there"):
        return {"prompt_id": "x", "character_id": character_id,
                "prompt": [{"role": "system", "content": "card"}, {"role": "user", "content": line}]}

    assert broken_rules(record("unit-b0p"), "Beep boop. Hello, human.") == 0
    assert broken_rules(record("unit-b0p"), "Hello, human.") == 1  # must start with "Beep boop."
    assert broken_rules(record("unit-b0p"), "Beep boop. Hello! 😀") == 1  # no emoji
    assert broken_rules(record("unit-b0p"), "Hello! 😀") == 2
    assert broken_rules(record("no-such-character"), "anything") == 0
    assert broken_rules({"prompt_id": "y", "prompt": [{"role": "user", "content": "hi"}]}, "anything") == 0
