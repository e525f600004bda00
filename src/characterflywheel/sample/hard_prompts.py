"""Hard prompts by the variance of reward scores (paper 7.3), with lowest mean as a comparison.

Several replies per prompt are scored by the reward judge. A prompt where the policy's replies
score very differently is one where it sometimes succeeds and sometimes fails: that spread is
what online RL learns from (a group-relative advantage is zero when all replies score alike), so
high variance is the default difficulty signal. Lowest mean score is offered as the alternative
and both selections are always reported side by side (mean variance, mean score, Jaccard overlap).

Assumptions: every prompt has >= 2 scored replies; variance is the population variance
(``ddof=0``) of the judge scores; ties are broken by input order, so a selection is deterministic.
Written by hand: a sort over two per-prompt statistics needs no library beyond numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from characterflywheel import artifacts
from characterflywheel.data.jsonl import write_json, write_jsonl
from characterflywheel.data.records import check_prompts
from characterflywheel.models import GenerationBackend, SamplingParams
from characterflywheel.sample.protocols import Judge
from characterflywheel.sample.records import plain_messages
from characterflywheel.sample.rejection import checked_score_groups

HARD_REPORT_FILE = "hard_prompts_report.json"
HardBy = Literal["variance", "mean"]
HARD_BY = ("variance", "mean")


@dataclass
class HardPromptSelection:
    selected: list[dict[str, Any]]  # contract prompt records + reward_mean, reward_var, hardest first
    report: dict[str, Any]

    def write(self, out_dir: Path | str) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {artifacts.HARD_PROMPTS: out / artifacts.HARD_PROMPTS, HARD_REPORT_FILE: out / HARD_REPORT_FILE}
        write_jsonl(paths[artifacts.HARD_PROMPTS], self.selected)
        write_json(paths[HARD_REPORT_FILE], self.report)
        return paths


def selection_size(total: int, share: float | None = None, count: int | None = None) -> int:
    """``count`` if given, else ``round(share * total)``, at least 1 (for a non-empty set), at most ``total``."""
    if count is not None:
        if count < 1:
            raise ValueError(f"hard prompt count must be >= 1, got {count}")
        return min(count, total)
    if share is None:
        raise ValueError("give a share or a count of hard prompts")
    if not 0 < share <= 1:
        raise ValueError(f"hard prompt share must be in (0, 1], got {share}")
    return min(total, max(1, round(share * total))) if total else 0


def reward_statistics(scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, the mean and population variance of its replies' scores."""
    for index, group in enumerate(scores):
        if len(group) < 2:
            raise ValueError(f"hard prompts: prompt {index} has {len(group)} scored replies, need >= 2")
    means = np.array([float(np.mean(group)) for group in scores])
    variances = np.array([float(np.var(group)) for group in scores])
    return means, variances


def hardness_order(means: np.ndarray, variances: np.ndarray, by: HardBy) -> np.ndarray:
    """Prompt positions hardest first: highest variance, or lowest mean; ties by input order."""
    positions = np.arange(len(means))
    if by == "variance":
        return np.lexsort((positions, -variances))
    if by == "mean":
        return np.lexsort((positions, means))
    raise ValueError(f"hard prompts: by must be one of {HARD_BY}, got {by!r}")


def jaccard(first: set[Any], second: set[Any]) -> float:
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def select_hard_prompts_from_scores(
    prompts: Sequence[dict[str, Any]],
    scores: Sequence[np.ndarray],
    share: float | None = None,
    count: int | None = None,
    by: HardBy = "variance",
) -> HardPromptSelection:
    """Select hard prompts from already scored replies (one score array per prompt)."""
    if by not in HARD_BY:
        raise ValueError(f"hard prompts: by must be one of {HARD_BY}, got {by!r}")
    records = check_prompts(list(prompts))
    if len(scores) != len(records):
        raise ValueError(f"hard prompts: {len(scores)} score groups for {len(records)} prompts")
    means, variances = reward_statistics(scores)
    size = selection_size(len(records), share, count)
    orders = {criterion: hardness_order(means, variances, criterion)[:size] for criterion in HARD_BY}
    chosen = orders[by]
    selected = [
        {**records[i], "reward_mean": float(means[i]), "reward_var": float(variances[i])} for i in chosen
    ]

    def summary(positions: np.ndarray) -> dict[str, Any]:
        return {
            "count": int(len(positions)),
            "mean_variance": float(variances[positions].mean()) if len(positions) else None,
            "mean_score": float(means[positions].mean()) if len(positions) else None,
        }

    report = {
        "prompts": len(records),
        "replies_per_prompt": {"min": min((len(s) for s in scores), default=0),
                               "max": max((len(s) for s in scores), default=0)},
        "selected": len(selected),
        "by": by,
        "all": summary(np.arange(len(records))),
        "by_variance": summary(orders["variance"]),
        "by_mean": summary(orders["mean"]),
        "overlap_jaccard": jaccard(
            {records[i]["prompt_id"] for i in orders["variance"]}, {records[i]["prompt_id"] for i in orders["mean"]}
        ),
    }
    return HardPromptSelection(selected, report)


def select_hard_prompts(
    prompts: Sequence[dict[str, Any]],
    replies: Sequence[Sequence[str]] | GenerationBackend,
    judge: Judge,
    share: float | None = None,
    count: int | None = None,
    by: HardBy = "variance",
    sampling: SamplingParams | None = None,
    progress: bool = False,
    out_dir: Path | str | None = None,
) -> HardPromptSelection:
    """Score several replies per prompt and select the hardest prompts.

    ``replies`` is either the replies per prompt (input order) or a backend that generates
    ``sampling.n`` (default 4) replies per prompt. Writes hard_prompts.jsonl and its report
    when ``out_dir`` is set.
    """
    records = check_prompts(list(prompts))
    conversations = [plain_messages(record["prompt"]) for record in records]
    if hasattr(replies, "chat"):  # a backend (duck-typed: any object with .chat)
        params = sampling or SamplingParams(n=4)
        if params.n < 2:
            raise ValueError(f"hard prompts need >= 2 replies per prompt, sampling.n = {params.n}")
        groups = replies.chat(conversations, params, progress=progress) if records else []
    else:
        groups = [list(group) for group in replies]
        if len(groups) != len(records):
            raise ValueError(f"hard prompts: {len(groups)} reply groups for {len(records)} prompts")
    scores = checked_score_groups(judge, conversations, groups) if records else []
    selection = select_hard_prompts_from_scores(records, scores, share, count, by)
    if out_dir is not None:
        selection.write(out_dir)
    return selection
