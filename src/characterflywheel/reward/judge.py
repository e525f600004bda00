"""The reward judge: pointwise and pairwise models combined (paper 4.2: the pairwise model is used
with the pointwise scores to resist reward hacking).

``score_groups`` (candidates of one prompt, e.g. rejection sampling or a GRPO group)::

    combined_i = z_i + pairwise_weight * PAIRWISE_SCALE * (m_i - 0.5)

* ``z_i``: the pointwise score standardised with the normalisation saved at training time (mean and
  sd of the training replies' scores), so it is in standard deviations of the reward;
* ``m_i``: the mean over the other candidates j of the pairwise model's symmetric P(i beats j) -
  the candidate's win rate in a round robin within its group (a group of one has no pairwise term);
* ``PAIRWISE_SCALE = 4``: the slope of logit(m) at m = 0.5, so near a tie the pairwise term is the
  log-odds of winning; a candidate that beats all others surely moves by 2 x pairwise_weight sd.

A reply that games only one model (e.g. a pointwise blind spot) is held back by the other. The
round robin costs k (k - 1) pairwise forward passes for a group of k.

``win_rate(prompts, a, b)``: per prompt, the mean of the pairwise model's symmetric P(a beats b)
and sigmoid(s_a - s_b) of the raw pointwise scores (their differences are Bradley-Terry log-odds);
both are antisymmetric, so win_rate(a, b) + win_rate(b, a) = 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from characterflywheel import artifacts
from characterflywheel.reward.inputs import ChatMessages
from characterflywheel.reward.pairwise import PairwiseScorer, load_pairwise
from characterflywheel.reward.pointwise import sigmoid
from characterflywheel.reward.scorer import PointwiseScorer, load_pointwise

PAIRWISE_SCALE = 4.0
RewardFn = Callable[..., list[float]]


class RewardJudge:
    def __init__(self, pointwise: PointwiseScorer, pairwise: PairwiseScorer | None = None,
                 pairwise_weight: float = 0.5) -> None:
        if pairwise_weight < 0:
            raise ValueError(f"pairwise_weight must be >= 0, got {pairwise_weight}")
        self.pointwise = pointwise
        self.pairwise = pairwise
        self.pairwise_weight = pairwise_weight

    def round_robin(self, prompts: Sequence[ChatMessages], groups: Sequence[Sequence[str]],
                    progress: bool = False) -> list[np.ndarray]:
        """Per group, each candidate's mean symmetric P(beats another candidate); 0.5 for a group of one."""
        assert self.pairwise is not None
        ordered: list[tuple[int, int, int]] = [(g, i, j) for g, group in enumerate(groups)
                                               for i in range(len(group)) for j in range(len(group)) if i != j]
        logits = self.pairwise.logits([prompts[g] for g, _, _ in ordered], [groups[g][i] for g, i, _ in ordered],
                                      [groups[g][j] for g, _, j in ordered], progress)
        forward = {key: float(sigmoid(value)) for key, value in zip(ordered, logits)}
        results = []
        for g, group in enumerate(groups):
            k = len(group)
            if k < 2:
                results.append(np.full(k, 0.5))
                continue
            wins = [np.mean([(forward[(g, i, j)] + 1.0 - forward[(g, j, i)]) / 2.0 for j in range(k) if j != i])
                    for i in range(k)]
            results.append(np.asarray(wins, dtype=float))
        return results

    def score_groups(self, prompts: Sequence[ChatMessages], groups: Sequence[Sequence[str]],
                     progress: bool = False) -> list[np.ndarray]:
        if len(prompts) != len(groups):
            raise ValueError(f"{len(prompts)} prompts but {len(groups)} groups")
        flat_prompts = [prompts[g] for g, group in enumerate(groups) for _ in group]
        flat_replies = [reply for group in groups for reply in group]
        z = self.pointwise.standardise(self.pointwise.score(flat_prompts, flat_replies, progress))
        bounds = np.cumsum([0, *[len(group) for group in groups]])
        combined = [z[bounds[g]:bounds[g + 1]].copy() for g in range(len(groups))]
        if self.pairwise is not None and self.pairwise_weight > 0:
            for scores, wins in zip(combined, self.round_robin(prompts, groups, progress)):
                scores += self.pairwise_weight * PAIRWISE_SCALE * (wins - 0.5)
        return combined

    def win_rate(self, prompts: Sequence[ChatMessages], replies_a: Sequence[str], replies_b: Sequence[str],
                 progress: bool = False) -> np.ndarray:
        n = len(prompts)
        if not n == len(replies_a) == len(replies_b):
            raise ValueError(f"prompts, replies_a and replies_b differ in length: {n}, {len(replies_a)}, {len(replies_b)}")
        scores = self.pointwise.score([*prompts, *prompts], [*replies_a, *replies_b], progress)
        pointwise = sigmoid(scores[:n] - scores[n:])
        if self.pairwise is None:
            return pointwise
        return (pointwise + self.pairwise.prob_first_better(prompts, replies_a, replies_b, progress)) / 2.0

    def as_reward_fn(self) -> RewardFn:
        """``reward_fn(prompts, completions, **kwargs) -> list[float]`` for online RL (TRL's reward
        function signature). Completions of one prompt (equal prompt messages, e.g. a GRPO group)
        are scored together, so the pairwise round robin applies within the group. Completions may
        be strings or conversational ([{"role": "assistant", "content": ...}]); string prompts are
        read as one user turn."""

        def reward_fn(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
            if len(prompts) != len(completions):
                raise ValueError(f"reward_fn: {len(prompts)} prompts but {len(completions)} completions")
            histories = [as_messages(p) for p in prompts]
            replies = [completion_text(c) for c in completions]
            order: dict[str, list[int]] = {}
            for index, history in enumerate(histories):
                order.setdefault(json.dumps(history, sort_keys=True), []).append(index)
            members = list(order.values())
            scores = self.score_groups([histories[m[0]] for m in members], [[replies[i] for i in m] for m in members])
            rewards = [0.0] * len(replies)
            for indices, group_scores in zip(members, scores):
                for index, value in zip(indices, group_scores):
                    rewards[index] = float(value)
            return rewards

        return reward_fn


def as_messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise ValueError(f"reward_fn: a completion must be a string or a list of messages, got {type(completion).__name__}")


def load_judge(rm_dir: Path | str, pairwise_weight: float = 0.5, device: str = "auto") -> RewardJudge:
    """The judge from a reward stage's output: ``pointwise/`` (required) and ``pairwise/`` (if present)."""
    root = Path(rm_dir)
    pairwise_dir = root / "pairwise"
    pairwise = load_pairwise(pairwise_dir, device) if (pairwise_dir / artifacts.REWARD_CONFIG).is_file() else None
    return RewardJudge(load_pointwise(root / "pointwise", device), pairwise, pairwise_weight)
