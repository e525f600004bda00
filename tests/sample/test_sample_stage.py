"""The pre-herding sampling stage on a curated prompt file: outputs, metrics, hard prompts and the
user-signal re-ranking. The judge and user signal are stand-ins and the backend scripted, so this checks
the stage's wiring only (the real policy runs in test_sample_real_policy.py)."""

from __future__ import annotations

import json
import math

from sample_fakes import EmbeddedScoreJudge, EmbeddedSignal, ScriptedBackend, prompt_record, reply

from characterflywheel.data.jsonl import write_jsonl
from characterflywheel.sample.settings import SampleConfig
from characterflywheel.sample.stage import run_pre_herding_sampling

SCRIPT = {
    "a": [reply("x", 0.9, 0.1), reply("y", 0.6, 0.9), reply("z", 0.1, 0.5)],
    "b": [reply("x", 0.5, 0.5), reply("y", 0.5, 0.5), reply("z", 0.5, 0.5)],
    "c": [reply("x", 0.8, 0.5), reply("y", 0.2, 0.5), reply("z", 0.3, 0.5)],
    "d": [reply("x", 0.4, 0.5), reply("y", 0.45, 0.5), reply("z", 0.41, 0.5)],
}


def test_the_stage_writes_its_sets_and_metrics(tmp_path):
    backends: list[str] = []

    def backend_factory(spec):
        backends.append(str(spec))
        return ScriptedBackend(str(spec), lambda line: SCRIPT[line])

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [prompt_record(f"p-{line}", line) for line in SCRIPT])
    settings = SampleConfig(k=3, tau_quantile=None, tau=0.4, min_margin=0.1, hard_count=2, user_signal_weight=0.75)
    out = tmp_path / "sample"
    metrics = run_pre_herding_sampling(prompts, ["current-model"], EmbeddedScoreJudge(), EmbeddedSignal(),
                                       backend_factory, out, settings, parent_win_rate=0.6)
    assert backends == ["current-model"]
    assert {"sft.jsonl", "prefs.jsonl", "candidates.jsonl", "report.json", "hard_prompts.jsonl"} <= {
        path.name for path in out.iterdir()}
    assert metrics["sample.candidates"] == 12.0 and metrics["sample.user_signal_active"] == 1.0
    assert metrics["sample.kept"] == 2 + 3 + 1 + 3
    assert metrics["sample.hard_prompts"] == 2.0
    assert not math.isnan(metrics["sample.hard.overlap_jaccard"])
    hard = [json.loads(line)["prompt_id"] for line in (out / "hard_prompts.jsonl").read_text().splitlines()]
    assert hard == ["p-a", "p-c"]  # highest variance of judge scores
    # Re-ranking is on (0.6 < 0.65): for p-a, y (0.6, P(continue) 0.9) beats x (0.9, 0.1) at weight 0.75.
    sft = {r["prompt_id"]: r for r in map(json.loads, (out / "sft.jsonl").read_text().splitlines())}
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
