"""Reward-model batching: whole-prompt batches, and one weighted example per distinct pair."""

from __future__ import annotations

import pytest

from characterflywheel.reward.training import epoch_batches, group_batches


def test_group_batches_keep_groups_whole_and_cover_every_example_once() -> None:
    groups = ["a"] * 5 + ["b"] * 2 + ["c"] * 7 + ["d"] * 1 + ["e"] * 3
    batches = group_batches(groups, batch_size=6, seed=3, epoch=0)
    flat = sorted(int(i) for batch in batches for i in batch)
    assert flat == list(range(len(groups)))
    for batch in batches:
        names = {groups[int(i)] for i in batch}
        for name in names:  # a group is never split between batches
            assert sum(groups[int(i)] == name for i in batch) == groups.count(name)
    assert all(len(batch) >= 6 for batch in batches[:-1])


def test_group_batches_reshuffle_per_epoch_and_repeat_per_seed() -> None:
    groups = [f"g{i % 10}" for i in range(40)]
    first = [b.tolist() for b in group_batches(groups, 8, seed=0, epoch=0)]
    assert first == [b.tolist() for b in group_batches(groups, 8, seed=0, epoch=0)]
    assert first != [b.tolist() for b in group_batches(groups, 8, seed=0, epoch=1)]
    assert len(epoch_batches(40, 8, 0, 0)) == 5


def test_pairwise_labels_of_one_pair_merge_into_a_weighted_soft_target() -> None:
    from characterflywheel.reward.examples import PreferenceExample
    from characterflywheel.reward.pairwise import merged_labels

    prompt = [{"role": "user", "content": "hi"}]
    examples = [PreferenceExample("p1", prompt, "a", "b", True), PreferenceExample("p1", prompt, "a", "b", False),
                PreferenceExample("p1", prompt, "a", "b", True), PreferenceExample("p1", prompt, "b", "a", True)]
    pairs, targets, weights = merged_labels(examples)
    assert [(p.first, p.second) for p in pairs] == [("a", "b"), ("b", "a")]
    assert targets.tolist() == pytest.approx([2 / 3, 1.0]) and weights.tolist() == [3.0, 1.0]


def test_pointwise_loss_encodes_each_distinct_reply_once_and_keeps_the_loss() -> None:
    import torch

    from characterflywheel.reward.examples import PreferenceExample, RatingExample
    from characterflywheel.reward.pointwise import OrdinalThresholds, ordinal_nll, pointwise_loss

    class LengthScorer:  # score = reply length / 10, with a count of encoded rows
        rows = 0

        def forward(self, prompts: list, groups: list) -> torch.Tensor:
            self.rows += len(groups)
            return torch.tensor([[len(g[0]) / 10.0] for g in groups])

    prompt = [{"role": "user", "content": "hi"}]
    prefs = [PreferenceExample("p", prompt, "aaaa", "bb", True), PreferenceExample("p", prompt, "aaaa", "bb", False),
             PreferenceExample("p", prompt, "bb", "c", True)]
    ratings = [RatingExample("p", prompt, "aaaa", 4), RatingExample("p", prompt, "c", 2)]
    scorer, thresholds = LengthScorer(), OrdinalThresholds()
    loss = pointwise_loss(scorer, thresholds, prefs, ratings, rating_weight=0.5)
    assert scorer.rows == 3  # "aaaa", "bb", "c": 8 scored slots, 3 encodings
    margins = torch.tensor([0.2, -0.2, 0.1])
    expected = -torch.nn.functional.logsigmoid(margins).mean() + 0.5 * ordinal_nll(
        torch.tensor([0.4, 0.1]), torch.tensor([4, 2]), thresholds())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
