"""The judge's combination of pointwise and pairwise scores, on real MiniLM models with seeded
(untrained) heads: the arithmetic is what is checked here, learning is checked per model."""

from __future__ import annotations

import numpy as np
import pytest

from characterflywheel.reward import PAIRWISE_SCALE, RewardJudge, load_judge
from characterflywheel.reward.backbones import load_backbone, save_folder
from characterflywheel.reward.inputs import InputFormat

FORMAT = InputFormat(max_length=48, history_messages=2, system_chars=0, reply_share=0.5)
PROMPTS = [[{"role": "system", "content": "You are Robin."}, {"role": "user", "content": "I just got a puppy!"}],
           [{"role": "user", "content": "What should I cook tonight?"}]]
GROUPS = [["Congrats! What breed is it?", "ok.", "Puppies are great, what did you name it? 🐶"],
          ["Maybe a risotto, do you like mushrooms?"]]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    for kind, seed, extra in (("pointwise", 1, {"normalisation": {"mean": 0.1, "std": 2.0}, "thresholds": None}),
                              ("pairwise", 2, {})):
        model, tokenizer = load_backbone("embedded:all-minilm-l6-v2", num_labels=1, seed=seed)
        save_folder(root / kind, model, tokenizer, {"kind": kind, "style": "pair", "input": FORMAT.to_dict(),
                                                    "backbone": "embedded:all-minilm-l6-v2", **extra})
    return root


@pytest.fixture(scope="module")
def judge(rm_dir):
    return load_judge(rm_dir, pairwise_weight=0.5, device="cpu")


@pytest.mark.slow
def test_score_groups_adds_the_scaled_round_robin_to_standardised_scores(judge):
    combined = judge.score_groups(PROMPTS, GROUPS)
    assert [len(c) for c in combined] == [3, 1]
    raw = judge.pointwise.score([PROMPTS[0]] * 3, GROUPS[0])
    z = (raw - 0.1) / 2.0
    group = GROUPS[0]
    wins = [np.mean([judge.pairwise.prob_first_better([PROMPTS[0]], [group[i]], [group[j]])[0]
                     for j in range(3) if j != i]) for i in range(3)]
    np.testing.assert_allclose(combined[0], z + 0.5 * PAIRWISE_SCALE * (np.array(wins) - 0.5), atol=1e-5)
    alone = (judge.pointwise.score([PROMPTS[1]], GROUPS[1]) - 0.1) / 2.0
    np.testing.assert_allclose(combined[1], alone, atol=1e-6)  # a group of one has no pairwise term
    pointwise_only = RewardJudge(judge.pointwise, None).score_groups(PROMPTS, GROUPS)
    np.testing.assert_allclose(pointwise_only[0], z, atol=1e-6)


@pytest.mark.slow
def test_win_rate_is_symmetric_and_mixes_both_models(judge):
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    a, b = ["Congrats!", "Risotto!", "ok."], ["ok.", "Pizza, obviously.", "What breed?"]
    forward, backward = judge.win_rate(prompts, a, b), judge.win_rate(prompts, b, a)
    np.testing.assert_allclose(forward + backward, 1.0, atol=1e-6)
    scores_a, scores_b = judge.pointwise.score(prompts, a), judge.pointwise.score(prompts, b)
    expected = (1 / (1 + np.exp(-(scores_a - scores_b))) + judge.pairwise.prob_first_better(prompts, a, b)) / 2
    np.testing.assert_allclose(forward, expected, atol=1e-6)


@pytest.mark.slow
def test_reward_fn_scores_each_prompts_completions_as_one_group(judge):
    reward_fn = judge.as_reward_fn()
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0]]
    completions = [GROUPS[0][0], GROUPS[1][0], [{"role": "assistant", "content": GROUPS[0][1]}], GROUPS[0][2]]
    rewards = reward_fn(prompts, completions, completion_ids=None)
    expected = judge.score_groups(PROMPTS, GROUPS)
    np.testing.assert_allclose(rewards, [expected[0][0], expected[1][0], expected[0][1], expected[0][2]], atol=1e-5)
    assert all(isinstance(r, float) for r in rewards)


def test_a_folder_of_the_wrong_kind_is_refused(rm_dir):
    from characterflywheel.reward import load_pairwise

    with pytest.raises(ValueError, match="kind: expected 'pairwise', got 'pointwise'"):
        load_pairwise(rm_dir / "pointwise")
