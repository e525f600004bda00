"""Hard prompts by reward variance vs lowest mean, on constructed scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sample_fakes import EmbeddedScoreJudge, ScriptedBackend, prompt_record, reply

from characterflywheel.models import SamplingParams
from characterflywheel.sample.hard_prompts import (
    select_hard_prompts,
    select_hard_prompts_from_scores,
    selection_size,
)

PROMPTS = [prompt_record(name, f"line {name}") for name in ("split", "bad", "good", "mixed")]
SCORES = [np.array([0.0, 1.0]), np.array([0.1, 0.1]), np.array([0.9, 0.9]), np.array([0.3, 0.7])]


def test_variance_and_mean_select_different_prompts():
    by_variance = select_hard_prompts_from_scores(PROMPTS, SCORES, count=2, by="variance")
    by_mean = select_hard_prompts_from_scores(PROMPTS, SCORES, count=2, by="mean")
    assert [r["prompt_id"] for r in by_variance.selected] == ["split", "mixed"]
    assert [r["prompt_id"] for r in by_mean.selected] == ["bad", "split"]  # split beats mixed by input order
    report = by_variance.report
    assert report == {**by_mean.report, "by": "variance"}  # both selections are always reported
    assert report["by_variance"]["mean_variance"] == pytest.approx((0.25 + 0.04) / 2)
    assert report["by_mean"]["mean_variance"] == pytest.approx(0.25 / 2)
    assert report["by_variance"]["mean_score"] == pytest.approx(0.5)
    assert report["by_mean"]["mean_score"] == pytest.approx(0.3)
    assert report["all"]["mean_variance"] == pytest.approx(0.29 / 4)
    assert report["overlap_jaccard"] == pytest.approx(1 / 3)
    first = by_variance.selected[0]
    assert first["reward_mean"] == 0.5 and first["reward_var"] == 0.25 and first["prompt"] == PROMPTS[0]["prompt"]


def test_selection_size_share_and_count():
    assert selection_size(10, share=0.25) == 2  # round(2.5) -> 2 (banker's rounding)
    assert selection_size(10, share=0.01) == 1
    assert selection_size(3, count=5) == 3
    assert selection_size(10, share=0.5, count=4) == 4
    with pytest.raises(ValueError, match="share"):
        selection_size(10, share=1.5)


def test_select_from_replies_writes_records(tmp_path):
    groups = [[reply("x", float(s)) for s in scores] for scores in SCORES]
    selection = select_hard_prompts(PROMPTS, groups, EmbeddedScoreJudge(), share=0.5, out_dir=tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "hard_prompts.jsonl").read_text().splitlines()]
    assert [r["prompt_id"] for r in lines] == ["split", "mixed"] == [r["prompt_id"] for r in selection.selected]
    assert {"prompt_id", "prompt", "character_id", "depth", "reward_mean", "reward_var"} <= set(lines[0])
    assert json.loads((tmp_path / "hard_prompts_report.json").read_text())["selected"] == 2


def test_select_with_a_backend_generates_n_replies():
    table = dict(zip((f"line {r['prompt_id']}" for r in PROMPTS), SCORES, strict=True))
    backend = ScriptedBackend("scripted", lambda line: [reply("r", float(s)) for s in table[line]])
    selection = select_hard_prompts(
        PROMPTS, backend, EmbeddedScoreJudge(), count=1, by="mean", sampling=SamplingParams(n=4, seed=1)
    )
    assert backend.calls == [(4, 4)]
    assert selection.report["replies_per_prompt"] == {"min": 4, "max": 4}
    assert [r["prompt_id"] for r in selection.selected] == ["bad"]


def test_one_reply_per_prompt_is_refused():
    with pytest.raises(ValueError, match="need >= 2"):
        select_hard_prompts_from_scores(PROMPTS[:1], [np.array([0.5])], count=1)
    with pytest.raises(ValueError, match="by must be one of"):
        select_hard_prompts_from_scores(PROMPTS, SCORES, count=1, by="median")
