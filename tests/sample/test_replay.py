"""The replay buffer: earlier generations' own accepted rows, re-scored by the current judge."""

from __future__ import annotations

import json

from sample_fakes import EmbeddedScoreJudge, reply

from characterflywheel.sample.replay import replay_rows


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _sft(prompt_id, text, **extra):
    return {"prompt_id": prompt_id, "messages": [{"role": "user", "content": "hi"},
                                                  {"role": "assistant", "content": text}], **extra}


def _pair(prompt_id, chosen, rejected, reason):
    return {"prompt_id": prompt_id, "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "rejected_reason": reason}


def test_rows_still_good_under_the_current_judge_are_replayed_once(tmp_path):
    gen1, gen2 = tmp_path / "gen-1", tmp_path / "gen-2"
    _write(gen1 / "sft.jsonl", [_sft("a", reply("x", 0.9)), _sft("b", reply("y", 0.1)), _sft("c", reply("z", 0.8))])
    _write(gen1 / "prefs.jsonl", [_pair("a", reply("x", 0.3), reply("w", 0.5), "cut_off"),
                                  _pair("b", reply("y", 0.3), reply("v", 0.5), "lower score")])
    # generation 2 replayed generation 1's rows: those are not read again from generation 2
    _write(gen2 / "sft.jsonl", [_sft("d", reply("u", 0.7)), _sft("a", reply("x", 0.9), replay=1)])
    sft, prefs, counts = replay_rows([(1, gen1), (2, gen2)], EmbeddedScoreJudge(), tau=0.5, seen_prompts={"c"})
    assert sorted((row["prompt_id"], row["replay"]) for row in sft) == [("a", 1), ("d", 2)]
    assert [pair["prompt_id"] for pair in prefs] == ["a"]  # a failure-mode pair stays whatever the scores
    assert counts == {"replay_sft_read": 3, "replay_sft_kept": 2, "replay_pairs_read": 2, "replay_pairs_kept": 1}
