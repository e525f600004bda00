"""Phase III: the stratified sample is closer to the targets (TV distance) than a random sample of
the same size, on every dimension at once, with uniform or given targets."""

from __future__ import annotations

import random

import pytest

from characterflywheel import artifacts
from characterflywheel.curate.records import read_prompt_records, write_jsonl
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.curate.stratify import (
    depth_bucket,
    outcome,
    run_stratify,
    stratify,
    total_variation,
)


def skewed_records(n: int = 3000, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        character = rng.choices(["ann", "bob", "cat", "dan"], weights=[70, 20, 8, 2])[0]
        depth = 1 + int(rng.expovariate(0.5)) if character != "dan" else rng.randint(1, 3)
        cluster = rng.choices(range(6), weights=[40, 25, 15, 10, 7, 3])[0]
        continued = rng.random() < (0.8 if cluster < 2 else 0.4)
        thumbs = rng.choices([None, "up", "down"], weights=[85, 10, 5])[0]
        records.append({"prompt_id": f"p{i}", "conversation_id": f"c{i}", "user_id": "u", "character_id": character,
                        "model_version": "m", "arm": None, "depth": depth,
                        "prompt": [{"role": "user", "content": "hi"}], "reply": "yo", "continued": continued,
                        "thumbs": thumbs, "cluster": cluster})
    return records


def test_helpers():
    assert [depth_bucket(d, [1, 2, 4, 8]) for d in (1, 2, 3, 4, 7, 8, 30)] == ["1", "2-3", "2-3", "4-7", "4-7", "8+", "8+"]
    assert outcome({"thumbs": "up", "continued": False}) == "thumbs_up"
    assert outcome({"thumbs": None, "continued": False}) == "left"
    assert outcome({"thumbs": None, "continued": None}) == "unknown"
    assert total_variation({"a": 1.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["greedy", "raking"])
def test_sample_beats_random_on_every_dimension(method):
    records = skewed_records()
    settings = CurateConfig(max_prompts=400, stratify_method=method)
    kept, report = stratify(records, settings, seed=3)
    assert len(kept) == report.kept == 400 and report.kept + report.dropped == len(records)
    assert len({r["prompt_id"] for r in kept}) == 400
    for dimension, figures in report.dimensions.items():
        assert figures["tv"] < figures["random_tv"], (dimension, figures["tv"], figures["random_tv"])
    assert report.mean_tv < 0.5 * report.random_mean_tv


def test_greedy_meets_given_targets_when_the_data_allows():
    records = skewed_records()
    targets = {"outcome": {"continued": 2, "left": 1, "thumbs_up": 1, "thumbs_down": 0},
               "character_id": {"ann": 1, "bob": 1, "cat": 1}}
    settings = CurateConfig(max_prompts=300, strata=["character_id", "outcome"], strata_targets=targets)
    kept, report = stratify(records, settings)
    assert report.dimensions["outcome"]["tv"] < 0.02 and report.dimensions["character_id"]["tv"] < 0.02
    assert not any(r["character_id"] == "dan" or r["thumbs"] == "down" for r in kept)


def test_run_stratify_writes_and_names_missing_cluster(tmp_path):
    records = skewed_records(200)
    write_jsonl(tmp_path / "diverse.jsonl", records)
    report = run_stratify(tmp_path / "diverse.jsonl", tmp_path / "out", CurateConfig(max_prompts=50))
    assert len(list(read_prompt_records(tmp_path / "out" / artifacts.STRATIFIED))) == report.kept == 50
    for record in records:
        del record["cluster"]
    write_jsonl(tmp_path / "nocluster.jsonl", records)
    with pytest.raises(ValueError, match=r"nocluster.jsonl: record 'p0': cluster: missing"):
        run_stratify(tmp_path / "nocluster.jsonl", tmp_path / "out2", CurateConfig(max_prompts=50))


def test_config_rejects_unknown_dimension():
    with pytest.raises(ValueError, match="unknown dimension 'mood'"):
        CurateConfig(strata=["mood"])
