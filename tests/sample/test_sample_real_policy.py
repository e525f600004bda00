"""The whole pre-herding sampling stage on the real embedded policy, judged by a small real
scorer (MiniLM cosine similarity of the reply to the last user line), with a pool holding the
policy and an off-topic "earlier generation". Kept to 9 short generations: the CPU is shared."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sample_fakes import prompt_record

from characterflywheel.models import EMBEDDED_POLICY, SamplingParams, make_backend
from characterflywheel.data.jsonl import write_jsonl
from characterflywheel.sample.settings import SampleConfig
from characterflywheel.sample.stage import run_pre_herding_sampling

OFF_TOPIC = "Invoice 4471: quarterly tax ledger attached."
LINES = ["Hi! How was your day?", "Tell me a joke about cats.", "What's your favourite food?"]


class RelevanceJudge:
    """Score = cosine similarity (MiniLM) between a reply and the last user line."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder

    def _similarity(self, prompts, replies) -> np.ndarray:
        queries = self.embedder.encode([p[-1]["content"] for p in prompts], normalize_embeddings=True)
        answers = self.embedder.encode(list(replies), normalize_embeddings=True)
        return np.sum(queries * answers, axis=1)

    def score_groups(self, prompts, groups):
        flat_prompts = [p for p, group in zip(prompts, groups, strict=True) for _ in group]
        flat = self._similarity(flat_prompts, [r for group in groups for r in group])
        bounds = np.cumsum([0, *(len(group) for group in groups)])
        return [flat[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]

    def win_rate(self, prompts, replies_a, replies_b):
        margin = self._similarity(prompts, replies_a) - self._similarity(prompts, replies_b)
        return 1 / (1 + np.exp(-10 * margin))


class OffTopicBackend:
    name = "off-topic"

    def chat(self, conversations, params: SamplingParams, progress: bool = False):
        return [[OFF_TOPIC] * params.n for _ in conversations]


@pytest.mark.slow
def test_pre_herding_sampling_on_the_embedded_policy(tmp_path, embedder):
    from datasets import load_dataset

    prompts_path = tmp_path / "prompts.jsonl"
    write_jsonl(prompts_path, [prompt_record(f"p{i}", line) for i, line in enumerate(LINES)])
    made: list[str] = []
    policy_backend = make_backend("fast", EMBEDDED_POLICY, batch_size=8)

    def factory(spec):
        made.append(str(spec))
        return policy_backend if spec == EMBEDDED_POLICY else OffTopicBackend()

    settings = SampleConfig(k=2, probe_n=1, max_new_tokens=64, tau_quantile=0.5, min_margin=0.0, hard_share=0.5)
    out = tmp_path / "sample"
    metrics = run_pre_herding_sampling(
        prompts_path, [EMBEDDED_POLICY, "gen-0-off-topic"], RelevanceJudge(embedder), None, factory, out,
        settings, parent_win_rate=0.55,
    )
    report = json.loads((out / "report.json").read_text())
    assert made == [EMBEDDED_POLICY, "gen-0-off-topic"]
    # The real policy answers on topic more than a ledger line does, on most prompts.
    assert report["model_choice_counts"][EMBEDDED_POLICY] >= 2
    assert report["probe_mean_score"][EMBEDDED_POLICY] > report["probe_mean_score"]["gen-0-off-topic"]
    assert report["candidates"] == 6 and metrics["sample.candidates"] == 6.0
    # The median of 6 scores and everything above it, less the replies the token budget cut off.
    assert report["kept"] + report["filtered_cut_off"] >= 3
    assert report["cut_off_candidates"] >= report["filtered_cut_off"]
    assert report["user_signal"]["active"] is False  # no user-signal model given
    candidates = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert all(row["reply"] for row in candidates)
    assert not any(row["kept"] and row["cut_off"] for row in candidates)  # a cut-off reply is never kept
    sft = load_dataset("json", data_files=str(out / "sft.jsonl"), split="train")
    assert len(sft) == report["sft_records"] == report["prompts_with_kept"]
    assert all(row["messages"][-1]["role"] == "assistant" for row in sft)
    if report["preference_pairs"]:
        prefs = load_dataset("json", data_files=str(out / "prefs.jsonl"), split="train")
        assert all(row["score_chosen"] > row["score_rejected"] for row in prefs
                   if row["rejected_reason"] == "lower score")
    hard = [json.loads(line) for line in (out / "hard_prompts.jsonl").read_text().splitlines()]
    assert len(hard) == 2 == metrics["sample.hard_prompts"]
    assert hard[0]["reward_var"] >= hard[1]["reward_var"]
    assert metrics["sample.hard.by_variance.mean_variance"] >= metrics["sample.hard.all.mean_variance"]


@pytest.mark.slow
def test_guided_candidates_from_the_embedded_policy_keep_a_card_s_opening_rules(tmp_path, embedder):
    from characterflywheel.characters import load_characters

    card = next(c for c in load_characters() if c.id == "captain-saltbeard")
    record = prompt_record("p0", "What's your favourite food?", system=card.system_prompt())
    record["character_id"] = card.id
    prompts_path = tmp_path / "prompts.jsonl"
    write_jsonl(prompts_path, [record])
    policy_backend = make_backend("fast", EMBEDDED_POLICY, batch_size=8)
    settings = SampleConfig(k=2, probe_n=1, max_new_tokens=64, tau_quantile=0.0, min_margin=0.0, guided=2)
    out = tmp_path / "sample"
    run_pre_herding_sampling(prompts_path, [EMBEDDED_POLICY], RelevanceJudge(embedder), None,
                             lambda spec: policy_backend, out, settings)
    rows = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    guided = [row for row in rows if row["guided"]]
    assert len(rows) == 4 and len(guided) == 2
    for row in guided:  # the opening is forced, the rest is the model's own
        assert row["reply"].startswith("Ahoy! Yo ho ho!") and len(row["reply"]) > len("Ahoy! Yo ho ho!")
    report = json.loads((out / "report.json").read_text())
    assert report["guided_candidates"] == 2 and report["prompts_guided"] == 1
    if any(not row["breaks_rules"] and not row["cut_off"] for row in rows):  # a finished rule keeper is kept
        sft = json.loads((out / "sft.jsonl").read_text().splitlines()[0])
        assert sft["messages"][-1]["content"].startswith("Ahoy!")
