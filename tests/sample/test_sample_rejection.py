"""Rejection-sampling logic with scripted replies whose scores are known exactly."""

from __future__ import annotations

import json

import pytest
from sample_fakes import (
    EmbeddedScoreJudge,
    EmbeddedSignal,
    ScriptedBackend,
    last_user_line,
    parse,
    prompt_record,
    reply,
)

from characterflywheel.sample.rejection import rejection_sample
from characterflywheel.sample.settings import SampleConfig

SCRIPT = {
    "hi": [reply("a", 0.1, 0.9), reply("b", 0.5, 0.2), reply("c", 0.9, 0.1), reply("d", 0.3, 1.0)],
    "joke": [reply("e", 0.6, 0.9), reply("f", 0.62, 0.1), reply("g", 0.05, 0.5), reply("h", 0.7, 0.3)],
    "flat": [reply("i", 0.45, 0.5), reply("j", 0.47, 0.5), reply("k", 0.46, 0.5), reply("l", 0.44, 0.5)],
    "low": [reply("m", 0.1, 0.9), reply("n", 0.2, 0.9), reply("o", 0.3, 0.9), reply("p", 0.35, 0.9)],
}
PROMPTS = [prompt_record(f"p{i}", line) for i, line in enumerate(SCRIPT)]


def settings(**overrides) -> SampleConfig:
    return SampleConfig(**{"k": 4, "tau": 0.4, "tau_quantile": None, "min_margin": 0.1, **overrides})


def run(**kwargs):
    backend = ScriptedBackend("scripted", lambda line: SCRIPT[line])
    kwargs.setdefault("settings", settings())
    result = rejection_sample(PROMPTS, ["current"], EmbeddedScoreJudge(), lambda spec: backend, **kwargs)
    return result, backend


def test_nothing_below_tau_is_kept_and_sft_takes_the_best_kept():
    result, backend = run()
    assert backend.calls == [(4, 4)]  # one model: no probes, one batched call
    for row in result.candidates:
        assert row["kept"] == (row["score"] >= 0.4)
        assert (row["rank"] is not None) == row["kept"]
    assert all(record["score"] >= 0.4 for record in result.sft)
    by_id = {record["prompt_id"]: record for record in result.sft}
    assert set(by_id) == {"p0", "p1", "p2"}  # "low" has nothing >= tau
    assert parse(by_id["p0"]["messages"][-1]["content"], "s") == 0.9
    assert by_id["p0"]["messages"][:-1] == PROMPTS[0]["prompt"]
    assert by_id["p0"]["messages"][-1]["role"] == "assistant"
    assert result.report["kept"] == 2 + 3 + 4
    assert result.report["prompts_without_kept"] == 1


def test_pairs_have_chosen_above_rejected_by_the_margin():
    result, _ = run()
    pairs = {pair["prompt_id"]: pair for pair in result.prefs}
    # flat: best 0.47 vs worst 0.44 is below the 0.1 margin; low: nothing kept, no pair.
    assert set(pairs) == {"p0", "p1"}
    for pair in result.prefs:
        assert pair["score_chosen"] - pair["score_rejected"] >= 0.1
        assert parse(pair["chosen"][0]["content"], "s") == pair["score_chosen"]
        assert parse(pair["rejected"][0]["content"], "s") == pair["score_rejected"]
        assert pair["score_chosen"] >= 0.4
    assert pairs["p1"]["score_rejected"] == 0.05  # the worst of all candidates, kept or not
    assert result.report["pairs_skipped_below_margin"] == 1


def test_tau_quantile_uses_the_pooled_scores():
    result, _ = run(settings=settings(tau_quantile=0.75))
    scores = sorted(row["score"] for row in result.candidates)
    assert result.report["tau_source"] == "quantile 0.75"
    assert result.report["tau"] == pytest.approx(0.5 + 0.25 * (0.6 - 0.5))  # 16 scores: between 12th and 13th
    assert result.report["kept"] == sum(s >= result.report["tau"] for s in scores)


@pytest.mark.parametrize("win_rate", [0.5, 0.649])
def test_user_signal_reranks_kept_candidates_below_the_limit(win_rate):
    signal = EmbeddedSignal()
    result, _ = run(user_signal=signal, parent_win_rate=win_rate, settings=settings(user_signal_weight=0.9))
    decision = result.report["user_signal"]
    assert decision["active"] and "<" in decision["reason"]
    # It only ever saw candidates that passed tau.
    assert all(parse(r, "s") >= 0.4 for r in signal.seen)
    assert len(signal.seen) == result.report["kept"]
    by_id = {record["prompt_id"]: record for record in result.sft}
    # p0 kept: b (0.5, c=0.2), c (0.9, c=0.1); a (c=0.9) and d (c=1.0) failed tau and stay out.
    assert parse(by_id["p0"]["messages"][-1]["content"], "s") == 0.5
    # p1 kept: e (0.6, c=0.9), f (0.62, c=0.1), h (0.7, c=0.3): e wins the blend.
    assert parse(by_id["p1"]["messages"][-1]["content"], "s") == 0.6
    assert decision["changed_top_pick"] == 2
    for row in result.candidates:
        assert (row["p_continue"] is not None) == row["kept"]
        if row["selected"]:
            assert row["kept"]


@pytest.mark.parametrize(
    ("win_rate", "signal", "reason"),
    [(0.65, EmbeddedSignal(), ">="), (0.9, EmbeddedSignal(), ">="), (0.3, None, "no user-signal")],
)
def test_user_signal_is_off_at_or_above_the_limit(win_rate, signal, reason):
    baseline, _ = run()
    result, _ = run(user_signal=signal, parent_win_rate=win_rate, settings=settings(user_signal_weight=0.9))
    assert not result.report["user_signal"]["active"]
    assert reason in result.report["user_signal"]["reason"]
    assert signal is None or signal.seen == []
    assert result.sft == baseline.sft


def test_user_signal_ranks_from_generation_1_on():
    """Generation 1 has no win rate over a parent yet: the guard has nothing to stop, so the model
    trained on what users did ranks the candidates."""
    signal = EmbeddedSignal()
    result, _ = run(user_signal=signal, parent_win_rate=None, settings=settings(user_signal_weight=0.9))
    assert result.report["user_signal"]["active"]
    assert "nothing to stop" in result.report["user_signal"]["reason"]
    assert signal.seen


def test_best_model_per_prompt_from_a_pool_and_backends_are_cached():
    good = ScriptedBackend("good", lambda line: [reply(f"good {line}", 0.8), reply(f"good2 {line}", 0.7)])
    bad_at_jokes = ScriptedBackend(
        "old", lambda line: [reply(f"old {line}", 0.2 if line == "joke" else 0.95), reply("old2", 0.9)]
    )
    created: list[str] = []

    def factory(spec):
        created.append(str(spec))
        return {"current": good, "gen-0": bad_at_jokes}[spec]

    result = rejection_sample(
        PROMPTS[:2], ["current", "gen-0", "current"], EmbeddedScoreJudge(), factory,
        settings(k=2, probe_n=2, tau=0.0),
    )
    assert created == ["current", "gen-0"]  # one backend per spec, the repeated spec dropped
    assert result.report["model_choice_counts"] == {"current": 1, "gen-0": 1}
    assert result.report["probe_replies"] == 2 * 2 * 2
    models = {row["prompt_id"]: row["model"] for row in result.candidates}
    assert models == {"p0": "gen-0", "p1": "current"}
    assert good.calls == [(2, 2)] and bad_at_jokes.calls == [(2, 2)]  # k = probe_n: the probes are the candidates
    assert result.report["probe_mean_score"]["current"] == pytest.approx(0.75)


def test_the_chosen_models_probes_are_candidates_and_only_the_rest_is_sampled():
    good = ScriptedBackend("good", lambda line: [reply(f"good {line}", 0.8), reply(f"good2 {line}", 0.7)])
    old = ScriptedBackend("old", lambda line: [reply(f"old {line}", 0.2 if line == "joke" else 0.95),
                                               reply(f"old2 {line}", 0.9)])
    result = rejection_sample(PROMPTS[:2], ["current", "gen-0"], EmbeddedScoreJudge(),
                              {"current": good, "gen-0": old}.__getitem__, settings(k=3, probe_n=1, tau=0.0))
    assert good.calls == [(2, 1), (1, 2)] and old.calls == [(2, 1), (1, 2)]  # probes, then k - probe_n each
    by_prompt: dict[str, list[str]] = {}
    for row in result.candidates:
        by_prompt.setdefault(row["prompt_id"], []).append(row["reply"])
    assert len(by_prompt["p0"]) == len(by_prompt["p1"]) == 3
    for record, backend in zip(PROMPTS[:2], (old, good), strict=True):
        first, second = backend.script(last_user_line(record["prompt"]))
        assert by_prompt[record["prompt_id"]] == [first, first, second]  # the probe, then two new samples


def test_counts_reconcile_and_files_load_with_datasets(tmp_path):
    from datasets import load_dataset

    result, _ = run(out_dir=tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["candidates"] == len(PROMPTS) * 4 == len((tmp_path / "candidates.jsonl").read_text().splitlines())
    assert report["kept"] + report["filtered_below_tau"] == report["candidates"]
    assert report["acceptance_rate"] == pytest.approx(report["kept"] / report["candidates"])
    assert report["mean_score_kept"] > report["mean_score_all"]
    sft = load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train")
    prefs = load_dataset("json", data_files=str(tmp_path / "prefs.jsonl"), split="train")
    assert len(sft) == report["sft_records"] == report["prompts_with_kept"] == 3
    assert len(prefs) == report["preference_pairs"] == 2
    assert {"messages", "prompt_id", "score"} <= set(sft.column_names)
    assert {"prompt", "chosen", "rejected"} <= set(prefs.column_names)
    assert prefs[0]["chosen"][0]["role"] == "assistant" and prefs[0]["prompt"][-1]["role"] == "user"


def test_bad_prompt_record_names_record_and_field():
    broken = [PROMPTS[0], {"prompt_id": "x", "prompt": [{"role": "assistant", "content": "hi"}]}]
    with pytest.raises(ValueError, match=r"record 1 \(prompt_id x\): prompt: must end with a user turn"):
        rejection_sample(broken, ["m"], EmbeddedScoreJudge(), lambda spec: None, settings())
    with pytest.raises(ValueError, match="record 0: prompt_id: Field required"):
        rejection_sample([{"prompt": []}], ["m"], EmbeddedScoreJudge(), lambda spec: None, settings())


def test_judge_with_wrong_shape_is_reported():
    class ShortJudge(EmbeddedScoreJudge):
        def score_groups(self, prompts, groups):
            return [scores[:1] for scores in super().score_groups(prompts, groups)]

    backend = ScriptedBackend("scripted", lambda line: SCRIPT[line])
    with pytest.raises(ValueError, match="expected 4 finite scores"):
        rejection_sample(PROMPTS, ["m"], ShortJudge(), lambda spec: backend, settings())


def breaks_if_c_or_f(record, reply_text):
    """A stand-in rule: replies "c" and "f" break one of their character's rules."""
    return int(reply_text.split("|")[0] in {"c", "f"})


def test_a_rule_breaker_is_never_kept_and_is_the_rejected_reply_whatever_the_margin():
    result, _ = run(rule_check=breaks_if_c_or_f)
    rows = {row["reply"].split("|")[0]: row for row in result.candidates}
    assert rows["c"]["breaks_rules"] and not rows["c"]["kept"]  # the best score of "hi", yet not kept
    assert not rows["b"]["breaks_rules"] and rows["b"]["kept"]
    by_id = {record["prompt_id"]: record for record in result.sft}
    assert parse(by_id["p0"]["messages"][-1]["content"], "s") == 0.5  # "b": the best that keeps the rules
    pairs = {pair["prompt_id"]: pair for pair in result.prefs}
    # joke: chosen "h" 0.7, rejected the rule breaker "f" 0.62 (margin 0.08 < 0.1, kept all the same)
    assert pairs["p1"]["rejected"][0]["content"].startswith("f|") and pairs["p1"]["rule_pair"]
    assert pairs["p0"]["rejected"][0]["content"].startswith("c|")  # rejected scored above chosen
    report = result.report
    assert report["filtered_breaking_rules"] == 2 and report["rule_breaking_candidates"] == 2
    assert report["kept"] + report["filtered_below_tau"] + report["filtered_breaking_rules"] == report["candidates"]
    assert report["pairs_against_rule_breakers"] == 2


def test_follow_rules_off_ignores_the_check():
    result, _ = run(rule_check=breaks_if_c_or_f, settings=settings(follow_rules=False))
    assert result.report["filtered_breaking_rules"] == 0
    assert not any(row["breaks_rules"] for row in result.candidates)


def test_a_prompt_whose_candidates_all_break_the_rules_falls_back_to_scores():
    result, _ = run(rule_check=lambda record, text: int(text.startswith(("i|", "j|", "k|", "l|"))))
    flat = [row for row in result.candidates if row["prompt_id"] == "p2"]
    assert all(row["breaks_rules"] for row in flat)
    assert [row["kept"] for row in flat] == [True, True, True, True]  # all >= tau 0.4, judged on score
    assert "p2" not in {pair["prompt_id"] for pair in result.prefs}  # margin 0.03 < 0.1: no rule pair
    assert result.report["pairs_against_rule_breakers"] == 0
    assert result.report["prompts_rules_out_of_reach"] == 1 and result.report["filtered_breaking_rules"] == 0


def test_guided_candidates_open_as_the_rules_demand_and_can_be_the_only_rule_keepers():
    opening = lambda record: "Ahoy!" if record["prompt_id"] in {"p0", "p1"} else None  # noqa: E731
    broken = lambda record, text: int(record["prompt_id"] in {"p0", "p1"} and not text.startswith("Ahoy!"))  # noqa: E731
    result, backend = run(rule_check=broken, opening=opening, settings=settings(guided=2))
    assert backend.calls == [(4, 4), (2, 2)]  # the guided ones: one call, for the two prompts with an opening
    rows = [row for row in result.candidates if row["prompt_id"] == "p0"]
    assert [row["guided"] for row in rows] == [False] * 4 + [True] * 2
    assert all(row["reply"].startswith("Ahoy! ") and not row["breaks_rules"] for row in rows[4:])
    sft = {record["prompt_id"]: record for record in result.sft}
    assert sft["p0"]["guided"] and sft["p0"]["messages"][-1]["content"] == "Ahoy! b|s=0.5|c=0.2"
    assert sft["p1"]["messages"][-1]["content"] == "Ahoy! f|s=0.62|c=0.1"
    assert not sft["p2"]["guided"]
    pairs = {pair["prompt_id"]: pair for pair in result.prefs}
    assert pairs["p0"]["rule_pair"] and not pairs["p0"]["rejected"][0]["content"].startswith("Ahoy!")
    report = result.report
    assert (report["guided_candidates"], report["prompts_guided"], report["sft_guided"]) == (4, 2, 2)
    assert report["candidates"] == 4 * 4 + 4 and report["guided_kept"] == 3  # "a" 0.1 is below tau


def test_no_guided_candidates_without_the_setting():
    result, backend = run(opening=lambda record: "Ahoy!")
    assert backend.calls == [(4, 4)] and result.report["guided_candidates"] == 0


def breaks_if_o_or_p(record, reply_text):
    """On "low" (all below tau 0.4), the two best replies "o" 0.3 and "p" 0.35 break the rules."""
    return int(reply_text.split("|")[0] in {"o", "p"})


def test_a_prompt_whose_rule_keepers_are_all_below_tau_keeps_the_best_of_them():
    result, _ = run(rule_check=breaks_if_o_or_p, settings=settings(keep_best_rule_keeper=True))
    rows = {row["reply"].split("|")[0]: row for row in result.candidates}
    assert rows["n"]["kept"] and not rows["m"]["kept"] and not rows["p"]["kept"]
    sft = {record["prompt_id"]: record for record in result.sft}
    assert parse(sft["p3"]["messages"][-1]["content"], "s") == 0.2  # "n": the best rule keeper
    pair = {pair["prompt_id"]: pair for pair in result.prefs}["p3"]
    assert pair["rule_pair"] and pair["rejected"][0]["content"].startswith("o|")  # the lowest-scored breaker
    report = result.report
    assert report["kept_below_tau_keeping_rules"] == 1 and report["prompts_without_kept"] == 0
    assert report["kept"] + report["filtered_below_tau"] + report["filtered_breaking_rules"] == report["candidates"]


def test_by_default_such_a_prompt_yields_nothing():
    result, _ = run(rule_check=breaks_if_o_or_p)
    assert "p3" not in {record["prompt_id"] for record in result.sft}
    assert result.report["kept_below_tau_keeping_rules"] == 0 and result.report["prompts_without_kept"] == 1


def test_a_rule_out_of_reach_does_not_unbind_the_others_of_its_card():
    """Every candidate of "hi" breaks one rule (out of the model's reach); "c" and "d" break a second one
    as well: they are faulted like rule breakers, the others judged on score."""
    def broken(record, reply_text):
        return 1 + int(reply_text.split("|")[0] in {"c", "d"}) if record["prompt_id"] == "p0" else 0

    result, _ = run(rule_check=broken)
    rows = {row["reply"].split("|")[0]: row for row in result.candidates}
    assert [rows[r]["broken_rules"] for r in "abcd"] == [1, 1, 2, 2]
    assert not rows["c"]["kept"] and rows["b"]["kept"]  # "c" scored best, but broke the second rule
    pairs = {pair["prompt_id"]: pair for pair in result.prefs}
    assert pairs["p0"]["rule_pair"] and pairs["p0"]["rejected"][0]["content"][:2] in {"c|", "d|"}
    assert result.report["prompts_rules_out_of_reach"] == 1  # no candidate keeps the whole card
