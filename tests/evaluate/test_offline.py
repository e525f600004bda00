"""Offline evaluation: CIs cover the truth on a synthetic judge, annotators, instruction rates, and a run
on the REAL embedded policy judged by MiniLM similarity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from characterflywheel.characters import character_by_id
from characterflywheel.data.annotation import Annotation, AnnotationTask, Label, read_tasks
from characterflywheel.data.records import read_prompts
from characterflywheel.evaluate.gates import apply_gates
from characterflywheel.evaluate.offline import (
    annotator_win_rates,
    evaluate_child,
    generate_replies,
    run_offline_evaluation,
    select_heldout_prompts,
)
from characterflywheel.evaluate.settings import EvaluateConfig

SETTINGS = EvaluateConfig(bootstrap=300)


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


class HiddenQualityJudge:
    """A synthetic reward judge: every reply has a hidden quality; P(a beats b) = sigmoid(q_a - q_b + bias),
    where ``bias`` favours the reply shown first (a position bias the evaluation must cancel)."""

    def __init__(self, quality: dict[str, float], position_bias: float = 0.0) -> None:
        self.quality = quality
        self.position_bias = position_bias
        self.pointwise = self

    def score(self, prompts, replies) -> np.ndarray:
        return np.array([self.quality[reply] for reply in replies])

    def win_rate(self, prompts, replies_a, replies_b) -> np.ndarray:
        assert len(prompts) == len(replies_a) == len(replies_b)
        return _sigmoid(self.score(prompts, replies_a) - self.score(prompts, replies_b) + self.position_bias)


class QualityUserSignal:
    """Predicts [P(continue), P(thumbs up)] from the hidden quality; its held-out AUC for continuing
    0.75 (Somers' D 0.5)."""

    heldout_continue_auc = 0.75

    def __init__(self, quality: dict[str, float]) -> None:
        self.quality = quality

    def predict(self, prompts, replies) -> np.ndarray:
        p = _sigmoid([self.quality[reply] for reply in replies])
        return np.stack([p, p], axis=1)


class UncertainQualityUserSignal(QualityUserSignal):
    """The same, with bootstrap refits that disagree on how much quality matters (slopes 0 to 2)."""

    def continue_draws(self, replies) -> np.ndarray:
        slopes = np.linspace(0.0, 2.0, 21)[:, None]
        return _sigmoid(slopes * np.array([self.quality[reply] for reply in replies])[None, :])


def _records(n: int, characters: tuple[str, ...] = ("master-kaito", "ivy-greenleaf")) -> list[dict]:
    return [{
        "prompt_id": f"p{index}",
        "character_id": characters[index % len(characters)],
        "prompt": [{"role": "user", "content": f"tell me something, number {index}"}],
    } for index in range(n)]


def _synthetic(n: int, seed: int, child_shift: float = 0.4):
    rng = np.random.default_rng(seed)
    records = _records(n)
    child = [f"child reply {i}." for i in range(n)]
    parent = [f"parent reply {i}." for i in range(n)]
    quality = {**{r: float(q) for r, q in zip(child, rng.normal(child_shift, 1.0, n))},
               **{r: float(q) for r, q in zip(parent, rng.normal(0.0, 1.0, n))}}
    return records, child, parent, quality


def _true_win_rate(child_shift: float) -> float:
    """E[sigmoid(q_c - q_p)], q_c - q_p ~ N(shift, 2): by Monte Carlo on a fixed large sample."""
    draws = np.random.default_rng(12345).normal(child_shift, math.sqrt(2.0), 2_000_000)
    return float(_sigmoid(draws).mean())


def test_reward_model_win_rate_ci_covers_the_truth() -> None:
    truth = _true_win_rate(0.4)
    covered, trials = 0, 40
    for seed in range(trials):
        records, child, parent, quality = _synthetic(60, seed)
        report = evaluate_child(records, child, parent, judge=HiddenQualityJudge(quality), settings=SETTINGS)
        figure = report.win_rate_vs_parent["reward_model"]
        assert figure.n == 60 and figure.lo <= figure.value <= figure.hi
        covered += figure.lo <= truth <= figure.hi
    assert covered >= 33, f"95 % CI covered the true win rate {truth:.3f} in {covered}/{trials} datasets"


def test_several_replies_per_prompt_shrink_the_win_rates_sampling_noise(tmp_path: Path) -> None:
    """A child better by a small shift on every reply: over 40 datasets the win rate from 24 prompts x 8
    pairs (each prompt's pairs averaged, prompts the clusters) spreads far less than from 24 x 1 and
    misjudges the child less often; and the stage writes every sample once and reuses them."""
    shift, n, k = 0.2, 24, 8
    values: dict[int, list[float]] = {1: [], k: []}
    for seed in range(40):
        rng = np.random.default_rng(seed)
        records = _records(n)
        child = [[f"c{i}-{j}" for j in range(k)] for i in range(n)]
        parent = [[f"p{i}-{j}" for j in range(k)] for i in range(n)]
        quality = {r: float(rng.normal(shift, 1.0)) for group in child for r in group}
        quality |= {r: float(rng.normal(0.0, 1.0)) for group in parent for r in group}
        signal = QualityUserSignal(quality)
        for pairs in values:
            report = evaluate_child(records, [g[0] for g in child], [g[0] for g in parent],
                                    judge=HiddenQualityJudge(quality), settings=SETTINGS, user_signal=signal,
                                    child_samples=[g[:pairs] for g in child], parent_samples=[g[:pairs] for g in parent])
            assert report.win_rate_vs_parent["reward_model"].n == n
            values[pairs].append(report.win_rate_vs_parent["reward_model"].value)
    spread = {pairs: float(np.std(v)) for pairs, v in values.items()}
    wrong = {pairs: sum(value <= 0.5 for value in v) for pairs, v in values.items()}
    assert spread[k] < 0.6 * spread[1] and wrong[k] < wrong[1], (spread, wrong)

    records = _records(3)
    prompts_path = tmp_path / "heldout.jsonl"
    prompts_path.write_text("".join(json.dumps(r) + "\n" for r in records))

    class Counter:
        def __init__(self, name: str) -> None:
            self.name, self.asked = name, []

        def chat(self, conversations, params, progress=False):
            self.asked.append(params.n)
            return [[f"{self.name} {c[-1]['content']} #{j}" for j in range(params.n)] for c in conversations]

    child, parent, reference = Counter("child"), Counter("parent"), Counter("reference")
    replies = [f"{name} {r['prompt'][-1]['content']} #{j}" for name in ("child", "parent", "reference")
               for r in records for j in range(4)]
    judge = HiddenQualityJudge({reply: float(reply.startswith("child")) for reply in replies})
    settings = EvaluateConfig(bootstrap=200, samples_per_prompt=3)
    run_offline_evaluation(prompts_path, tmp_path / "eval", child, parent, judge, settings, reference_backend=reference)
    assert (child.asked, parent.asked, reference.asked) == ([3], [3], [1])
    rows = [json.loads(line) for line in (tmp_path / "eval" / "replies.jsonl").read_text().splitlines()]
    assert [len(row["samples"]["child"]) for row in rows] == [3, 3, 3]
    assert all(row["child"] == row["samples"]["child"][0] for row in rows)
    run_offline_evaluation(prompts_path, tmp_path / "eval", child, parent, judge, settings, reference_backend=reference)
    assert (child.asked, parent.asked) == ([3], [3])  # reused
    run_offline_evaluation(prompts_path, tmp_path / "eval", child, parent, judge,
                           EvaluateConfig(bootstrap=200, samples_per_prompt=4), reference_backend=reference)
    assert child.asked == [3, 4]  # a different count of samples is sampled again


def test_symmetrized_judging_cancels_position_bias() -> None:
    records, child, parent, quality = _synthetic(80, seed=3)
    fair = evaluate_child(records, child, parent, judge=HiddenQualityJudge(quality), settings=SETTINGS)
    biased_judge = HiddenQualityJudge(quality, position_bias=1.0)
    biased = evaluate_child(records, child, parent, judge=biased_judge, settings=SETTINGS)
    one_order = evaluate_child(records, child, parent, judge=biased_judge,
                               settings=EvaluateConfig(bootstrap=300, symmetrize_judge=False))
    fair_value = fair.win_rate_vs_parent["reward_model"].value
    assert abs(biased.win_rate_vs_parent["reward_model"].value - fair_value) < 0.02
    assert one_order.win_rate_vs_parent["reward_model"].value > fair_value + 0.1


def test_annotators_user_signal_and_per_character(tmp_path: Path) -> None:
    records, child, parent, quality = _synthetic(40, seed=7)
    reference = [f"reference reply {i}." for i in range(40)]
    quality.update({r: 0.0 for r in reference})
    calls: list[int] = []

    def filler(tasks: list[AnnotationTask]) -> list[Annotation]:
        """Two annotators who both prefer the response of higher hidden quality."""
        calls.append(len(tasks))
        out = []
        for task in tasks:
            preferred = int(quality[task.responses[1]] > quality[task.responses[0]])
            for annotator in ("ann-1", "ann-2"):
                out.append(Annotation(**task.model_dump(), annotator_id=annotator, label=Label(preferred=preferred)))
        return out

    report = evaluate_child(records, child, parent, reference, judge=HiddenQualityJudge(quality),
                            annotator_filler=filler, settings=SETTINGS, user_signal=QualityUserSignal(quality),
                            out_dir=tmp_path)
    child_better = np.array([quality[c] > quality[p] for c, p in zip(child, parent)], dtype=float)
    annotators = report.win_rate_vs_parent["annotators"]
    assert annotators.value == pytest.approx(child_better.mean()) and annotators.n == 40
    assert annotators.lo <= annotators.value <= annotators.hi
    assert report.user_signal_win_rate_vs_parent.value == pytest.approx(child_better.mean())
    continue_difference = _sigmoid([quality[r] for r in child]) - _sigmoid([quality[r] for r in parent])
    assert report.user_signal_continue_vs_parent.value == pytest.approx(continue_difference.mean())
    evidence = report.evidence_vs_parent
    expected_us = continue_difference.mean() / (continue_difference.std(ddof=1) / np.sqrt(40))
    assert evidence.user_signal_z == pytest.approx(expected_us) and evidence.n == 40
    assert evidence.user_signal_weight == pytest.approx(0.5) and evidence.heldout_continue_auc == 0.75
    assert evidence.combined_z == pytest.approx((evidence.reward_model_z + 0.5 * evidence.user_signal_z) / np.sqrt(1.25))
    assert report.to_dict()["evidence_vs_parent"]["combined_z"] == pytest.approx(evidence.combined_z)
    assert evidence.user_signal_model_se == 0.0  # a model without refits adds no error of its own

    uncertain = evaluate_child(records, child, parent, judge=HiddenQualityJudge(quality), settings=SETTINGS,
                               user_signal=UncertainQualityUserSignal(quality)).evidence_vs_parent
    slopes = np.linspace(0.0, 2.0, 21)
    per_draw = [(_sigmoid(k * np.array([quality[r] for r in child]))
                 - _sigmoid(k * np.array([quality[r] for r in parent]))).mean() for k in slopes]
    model_se = np.std(per_draw, ddof=1)
    assert uncertain.user_signal_model_se == pytest.approx(model_se) and model_se > 0
    prompt_se = continue_difference.std(ddof=1) / np.sqrt(40)
    assert uncertain.user_signal_z == pytest.approx(continue_difference.mean() / np.hypot(prompt_se, model_se))
    assert abs(uncertain.user_signal_z) < abs(evidence.user_signal_z)
    equal = evaluate_child(records, child, parent, judge=HiddenQualityJudge(quality),
                           settings=SETTINGS.model_copy(update={"evidence_user_signal_weight": "equal"}),
                           user_signal=QualityUserSignal(quality)).evidence_vs_parent
    assert equal.user_signal_weight == 1.0
    assert equal.combined_z == pytest.approx((equal.reward_model_z + equal.user_signal_z) / np.sqrt(2))
    vs_reference = np.array([quality[c] > 0.0 for c in child], dtype=float)
    assert report.win_rate_vs_reference["annotators"].value == pytest.approx(vs_reference.mean())
    assert calls == [80]  # one pairwise task per prompt and opponent
    # the task file is the annotation format, the child's position is hidden in a separate key
    tasks = list(read_tasks(tmp_path / "annotation_tasks.jsonl"))
    assert len(tasks) == 80 and {task.kind for task in tasks} == {"pairwise"}
    key_lines = (tmp_path / "annotation_key.jsonl").read_text().splitlines()
    positions = [json.loads(line)["child_index"] for line in key_lines]
    assert 0 < sum(positions) < 80
    from_files = annotator_win_rates(tmp_path / "annotation_key.jsonl", tmp_path / "annotations.jsonl", SETTINGS)
    assert from_files["parent"] == annotators
    # per character: each half of the prompts
    kaito = report.per_character["master-kaito"]
    assert kaito["n"] == 20
    judge_values = HiddenQualityJudge(quality).win_rate(records[0::2], child[0::2], parent[0::2])
    assert kaito["win_rate_vs_parent"]["reward_model"].value == pytest.approx(judge_values.mean())
    assert kaito["win_rate_vs_parent"]["annotators"].value == pytest.approx(child_better[0::2].mean())
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["per_character"]["ivy-greenleaf"]["win_rate_vs_reference"]["reward_model"]["n"] == 20
    assert set(report.metrics()) >= {"win_rate_vs_parent.reward_model", "win_rate_vs_parent.reward_model.lo",
                                     "violation_rate.child", "instruction_following.parent"}


def test_instruction_following_and_violation_rates_from_the_cards() -> None:
    kaito = character_by_id("master-kaito")  # max 40 words, no lists, no emoji
    ivy = character_by_id("ivy-greenleaf")  # ends with a question, at least one emoji
    records = _records(20)
    child = ["A calm mind wins. Breathe." if i % 2 == 0 else "Plants love light 🌱 do you?" for i in range(20)]
    parent = ["- kick\n- punch 👊" if i % 2 == 0 else "Plants love light." for i in range(20)]
    quality = {reply: 0.0 for reply in child + parent}
    report = evaluate_child(records, child, parent, judge=HiddenQualityJudge(quality),
                            characters=[kaito, ivy], settings=SETTINGS)
    following, violation = report.instruction_following, report.violation_rate
    assert (following["child"].value, following["child"].n) == (1.0, 20)
    assert following["parent"].value == 0.0
    # parent: kaito replies fail 2 of 3 checks (list, emoji), ivy replies fail 2 of 2 -> 40 failures / 50 checks
    assert (violation["parent"].value, violation["parent"].n) == (pytest.approx(40 / 50), 50)
    assert violation["child"].value == 0.0 and violation["child"].hi > 0  # never a zero-width interval
    difference = violation["child_minus_parent"]
    assert difference.value == pytest.approx(-0.8) and difference.hi < 0
    assert report.per_character["ivy-greenleaf"]["violation_rate"]["parent"].value == 1.0
    assert report.unknown_characters == []
    decision = apply_gates(report.to_dict(), settings=EvaluateConfig(win_rate_test="point"))
    assert {c.name: c.passed for c in decision.checks}["violation_rate_not_worse"]


def test_instruction_rates_count_every_reply_and_pair_them_by_prompt() -> None:
    """With several replies a prompt the rates count all of them: ivy's card asks for a question back
    and an emoji; the child keeps both in 3 of its 4 replies to each prompt, the parent in 1 of 4."""
    ivy = character_by_id("ivy-greenleaf")
    records = _records(16, characters=("ivy-greenleaf",))
    kept, broken = "Plants love light 🌱 do you?", "Plants love light."
    child = [[kept, kept, kept, broken] for _ in records]
    parent = [[kept, broken, broken, broken] for _ in records]
    quality = dict.fromkeys([kept, broken], 0.0)
    report = evaluate_child(records, [c[0] for c in child], [p[0] for p in parent], judge=HiddenQualityJudge(quality),
                            characters=[ivy], settings=SETTINGS, child_samples=child, parent_samples=parent)
    following = report.instruction_following
    assert (following["child"].value, following["child"].n) == (0.75, 64)
    assert following["parent"].value == 0.25
    difference = following["child_minus_parent"]
    # every prompt differs by the same +0.5: resampling prompts cannot move it
    assert (difference.value, difference.lo, difference.hi, difference.n) == (0.5, 0.5, 0.5, 128)
    first_reply_only = evaluate_child(records, [c[0] for c in child], [p[0] for p in parent], characters=[ivy],
                                      judge=HiddenQualityJudge(quality), settings=SETTINGS)
    assert first_reply_only.instruction_following["child_minus_parent"].value == 0.0


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    records, child, parent, quality = _synthetic(4, seed=0)
    judge = HiddenQualityJudge(quality)
    with pytest.raises(ValueError, match=r"child_replies: 3 replies for 4 prompts"):
        evaluate_child(records, child[:3], parent, judge=judge)
    broken = [dict(records[0], prompt=[{"role": "assistant", "content": "hi"}])] + records[1:]
    with pytest.raises(ValueError, match=r"prompts: record 0 \(prompt_id p0\): prompt: must end with a user turn"):
        evaluate_child(broken, child, parent, judge=judge)
    with pytest.raises(ValueError, match="judge: offline evaluation needs the reward models"):
        evaluate_child(records, child, parent)
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps(records[0]) + "\n" + json.dumps({"prompt_id": "x", "prompt": "hello"}) + "\n")
    with pytest.raises(ValueError, match=r"prompts.jsonl:2 \(prompt_id x\): prompt: Input should be a valid list"):
        read_prompts(path)


def test_heldout_selection_spreads_over_characters() -> None:
    records = _records(30, characters=("a", "b", "c"))
    chosen = select_heldout_prompts(records, 9, seed=1)
    assert sorted(r["character_id"] for r in chosen) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert len({r["prompt_id"] for r in chosen}) == 9
    assert len(select_heldout_prompts(records, 100)) == 30


def test_generate_replies_takes_the_first_reply_per_prompt() -> None:
    from characterflywheel.models import SamplingParams

    class EchoBackend:
        def chat(self, conversations, params, progress=False):
            return [[c[-1]["content"].upper()] * params.n for c in conversations]

    records = _records(3)
    assert generate_replies(EchoBackend(), records, SamplingParams()) == [
        r["prompt"][-1]["content"].upper() for r in records]
    with pytest.raises(ValueError, match="params.n: offline evaluation takes one reply per prompt"):
        generate_replies(EchoBackend(), records, SamplingParams(n=2))


# ------------------------------------------------------------------------------------------------------
# The real embedded policy, judged by a real (if simple) judge: MiniLM relevance to the user's message
# ------------------------------------------------------------------------------------------------------


class MiniLMRelevanceJudge:
    """Score = cosine similarity of the reply to the last user message (all-MiniLM-L6-v2);
    P(a beats b) = sigmoid((score_a - score_b) / 0.1)."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.pointwise = self

    def score(self, prompts, replies) -> np.ndarray:
        users = [prompt[-1]["content"] for prompt in prompts]
        u = self.embedder.encode(users, normalize_embeddings=True)
        r = self.embedder.encode(list(replies), normalize_embeddings=True)
        return np.sum(u * r, axis=1)

    def win_rate(self, prompts, replies_a, replies_b) -> np.ndarray:
        return _sigmoid((self.score(prompts, replies_a) - self.score(prompts, replies_b)) / 0.1)


@pytest.fixture
def one_torch_thread():
    """Decode on one thread: on the shared 2-core machine, two OpenMP threads competing with other
    processes made this decode 10-20x slower (measured: 4 prompts x 12 tokens, 49 s vs 2.8 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_offline_evaluation_of_the_real_embedded_policy(embedder, one_torch_thread, tmp_path: Path) -> None:
    from characterflywheel.models import EMBEDDED_POLICY, make_backend

    cards = {card: character_by_id(card) for card in ("master-kaito", "chef-gordo")}
    questions = ["what should i cook tonight?", "any advice for a beginner in martial arts?",
                 "is pizza with pineapple okay?", "how do i breathe when i am angry?"]
    records = [{"prompt_id": f"q{i}", "character_id": card_id,
                "prompt": [{"role": "system", "content": cards[card_id].system_prompt()},
                           {"role": "user", "content": question}]}
               for i, (question, card_id) in enumerate(zip(questions, ["chef-gordo", "master-kaito"] * 2))]
    prompts_path = tmp_path / "heldout.jsonl"
    prompts_path.write_text("".join(json.dumps(r) + "\n" for r in records))

    class GreetingParent:
        """A scripted parent that answers every message with its character's greeting."""

        def chat(self, conversations, params, progress=False):
            by_system = {card.system_prompt(): card.greeting for card in cards.values()}
            return [[by_system[c[0]["content"]]] for c in conversations]

    # child: the real SmolLM2 through the fast backend, greedy, 12 new tokens
    child_backend = make_backend("fast", EMBEDDED_POLICY)
    judge = MiniLMRelevanceJudge(embedder)
    settings = EvaluateConfig(heldout_prompts=4, bootstrap=200, max_new_tokens=12, temperature=0.0)
    report = run_offline_evaluation(prompts_path, tmp_path / "eval", child_backend, GreetingParent(), judge, settings,
                                    characters=cards)
    saved = json.loads((tmp_path / "eval" / "offline_report.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "eval" / "replies.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["child"].strip() for row in rows)
    assert {row["parent"] for row in rows} == {card.greeting for card in cards.values()}
    by_id = {r["prompt_id"]: r for r in records}
    prompts = [by_id[row["prompt_id"]]["prompt"] for row in rows]
    expected = judge.win_rate(prompts, [r["child"] for r in rows], [r["parent"] for r in rows])
    figure = saved["win_rate_vs_parent"]["reward_model"]
    assert figure["n"] == 4 and figure["value"] == pytest.approx(float(expected.mean()), abs=1e-6)
    assert figure["lo"] <= figure["value"] <= figure["hi"]
    assert saved["style"]["n"] == 4 and saved["instruction_following"]["child"]["n"] >= 2
    assert set(saved["per_character"]) == set(cards)
    decision = apply_gates(saved, settings=settings)
    assert [check.name for check in decision.checks][:1] == ["win_rate_vs_parent.reward_model"]
    assert all(check.reason for check in decision.checks)

    class MustNotGenerate:
        def chat(self, conversations, params, progress=False):
            raise AssertionError("replies.jsonl should have been reused")

    # a re-run reuses the cached replies (resume after a kill) and reproduces the report
    again = run_offline_evaluation(prompts_path, tmp_path / "eval", MustNotGenerate(), MustNotGenerate(), judge,
                                   settings, characters=cards)
    assert again.to_dict() == report.to_dict()


def test_the_user_signal_votes_by_its_held_out_skill() -> None:
    """five11's generation 5 (truth +0.056 over its parent): reward models z +2.51, user signal z -2.98.
    Equal weights stopped it (-0.33); a user-signal model that ranks held-out turns at AUC 0.60 (Somers'
    D 0.2) no longer outvotes the reward models, one at chance has no vote, a perfect one an equal vote."""
    from characterflywheel.evaluate.offline import parent_evidence, user_signal_weight

    assert user_signal_weight(0.60, "heldout_skill") == pytest.approx(0.2)
    assert user_signal_weight(0.45, "heldout_skill") == 0.0 and user_signal_weight(None, "heldout_skill") == 0.0
    assert user_signal_weight(1.0, "heldout_skill") == 1.0 and user_signal_weight(0.5, "equal") == 1.0
    wins = np.r_[np.ones(22), np.zeros(10)]  # the reward models' per-prompt wins over the parent: z +2.25
    differences = np.linspace(-0.02, 0.01, 32)  # the user signal's P(continue) child - parent: z -3.18
    both, reward_models_only = parent_evidence(wins, differences), parent_evidence(wins, None)
    assert reward_models_only.combined_z == pytest.approx(reward_models_only.reward_model_z)
    assert reward_models_only.user_signal_weight is None
    for weight in (0.0, 0.2, 1.0):
        evidence = parent_evidence(wins, differences, weight=weight, heldout_continue_auc=0.5 + weight / 2)
        assert evidence.combined_z == pytest.approx((both.reward_model_z + weight * both.user_signal_z)
                                                    / np.sqrt(1 + weight ** 2))
        assert evidence.user_signal_weight == weight and evidence.heldout_continue_auc == 0.5 + weight / 2
    assert parent_evidence(wins, differences, weight=0.0).combined_z == pytest.approx(both.reward_model_z)
    equal, skilled = (parent_evidence(wins, differences, weight=w).combined_z for w in (1.0, 0.2))
    assert equal < 0 < skilled
