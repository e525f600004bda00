"""Reward models (paper 4.1, 4.2, 7.4): pointwise, pairwise and user-signal, and the judge.

Public API (imported lazily, so ``characterflywheel.config`` can import ``reward.settings``
without loading torch):

* ``train_pointwise(annotations_path, out_dir, settings, work_dir=None, progress=False) -> dict``
* ``train_pairwise(annotations_path, out_dir, settings, work_dir=None, progress=False) -> dict``
* ``train_user_signal(prompts_path, out_dir, settings, work_dir=None, progress=False) -> dict``
* ``train_reward_models(annotations_path, prompts_path, out_dir, settings, work_dir=None, progress=False) -> dict``
  (the stage: ``out_dir/{pointwise,pairwise,user_signal}/`` + ``metrics.json``)
* ``load_pointwise(path) -> PointwiseScorer`` (``.score(prompts, replies) -> ndarray``)
* ``load_pairwise(path) -> PairwiseScorer`` (``.prob_first_better(prompts, a, b) -> ndarray``)
* ``load_user_signal(path) -> UserSignalModel`` (``.predict(prompts, replies) -> ndarray (n, 2)``)
* ``RewardJudge(pointwise, pairwise=None, pairwise_weight=0.5)`` with ``score_groups``, ``win_rate``,
  ``as_reward_fn``; ``load_judge(rm_dir, pairwise_weight=0.5)``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train_pointwise": "pointwise", "load_pointwise": "scorer", "PointwiseScorer": "scorer",
    "train_pairwise": "pairwise", "load_pairwise": "pairwise", "PairwiseScorer": "pairwise",
    "train_user_signal": "user_signal", "load_user_signal": "user_signal", "UserSignalModel": "user_signal",
    "RewardJudge": "judge", "load_judge": "judge", "PAIRWISE_SCALE": "judge",
    "train_reward_models": "stage", "RewardConfig": "settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'characterflywheel.reward' has no attribute {name!r}")
    return getattr(importlib.import_module(f"characterflywheel.reward.{module}"), name)
