"""The replay buffer: accepted rows of earlier generations, re-scored by this generation's reward models.

Each generation's own prompts give a few dozen SFT rows; trained on alone, what one generation
learned (finishing replies, asking back, a card's opening) is diluted by the next generation's rows
and nothing accumulates, least of all the rare rule-keeping rows that steerability is made of. So
every generation also replays the rows earlier generations accepted (their ``sft.jsonl`` and
``prefs.jsonl``, the rows they selected themselves, not what they replayed), re-scored by the
current judge, whose annotations and traffic are newer:

* an SFT row stays when its reply still scores >= this generation's tau;
* a preference pair stays when its rejected side is a failure mode (a broken rule, a cut-off, a
  loop, a generic closer: the check, not a judge, decided it) or the current judge still prefers
  its chosen side.

Replayed rows carry ``"replay": <generation they came from>`` and are appended after this
generation's own rows. Why our own code: it is a filter over our own JSONL rows with our judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from characterflywheel import artifacts
from characterflywheel.data.jsonl import iter_jsonl
from characterflywheel.data.records import PreferencePair, SFTRow, check_record
from characterflywheel.sample.protocols import Judge

REPLAY_KEY = "replay"


def _own_rows(path: Path, shape: type[SFTRow] | type[PreferencePair]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [check_record(row, f"{path}:{number}", shape) for number, row in iter_jsonl(path)]
    return [row for row in rows if REPLAY_KEY not in row]


def _prompt_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    return row["prompt"] if "prompt" in row else row["messages"][:-1]


def _reply_of(row: dict[str, Any], side: str = "messages") -> str:
    return row[side][-1]["content"] if side == "messages" else row[side][0]["content"]


def replay_rows(earlier: Sequence[tuple[int, Path]], judge: Judge, tau: float, seen_prompts: set[str]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """(SFT rows, preference pairs, counts) replayed from ``earlier`` = [(generation, sample dir)].
    Rows whose prompt this generation already has (``seen_prompts``) are not replayed twice."""
    sft_in, prefs_in = [], []
    for generation, folder in earlier:
        sft_in += [row | {REPLAY_KEY: generation} for row in _own_rows(folder / artifacts.SFT, SFTRow)
                   if str(row.get("prompt_id")) not in seen_prompts]
        prefs_in += [row | {REPLAY_KEY: generation}
                     for row in _own_rows(folder / artifacts.PREFERENCES, PreferencePair)
                     if str(row.get("prompt_id")) not in seen_prompts]
    sft_scores = _score(judge, [_prompt_of(r) for r in sft_in], [[_reply_of(r)] for r in sft_in])
    sft = [row | {"score": float(score[0])} for row, score in zip(sft_in, sft_scores) if score[0] >= tau]
    pair_scores = _score(judge, [_prompt_of(r) for r in prefs_in],
                         [[_reply_of(r, "chosen"), _reply_of(r, "rejected")] for r in prefs_in])
    prefs = [row | {"score_chosen": float(score[0]), "score_rejected": float(score[1])}
             for row, score in zip(prefs_in, pair_scores)
             if row.get("rejected_reason", "lower score") != "lower score" or score[0] > score[1]]
    counts = {"replay_sft_read": len(sft_in), "replay_sft_kept": len(sft),
              "replay_pairs_read": len(prefs_in), "replay_pairs_kept": len(prefs)}
    return sft, prefs, counts


def _score(judge: Judge, prompts: list[Any], groups: list[list[str]]) -> list[np.ndarray]:
    return judge.score_groups(prompts, groups) if groups else []
