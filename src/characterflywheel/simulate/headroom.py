"""Headroom check: proves the world can be climbed by the base model's own samples.

For a fixed set of opening prompts (a simulated user's real first line to a character), sample k
replies from the base model and score them on the hidden landscape (expected values, no noise).
If choosing the best of k by the landscape lifts mean P(continue) well above a random pick, the
policy can move towards engagement by rejection sampling alone; the base model's own level should
sit mid-range, not near 0 or 1, or there is nothing to learn. The same is reported for the
instruction-following rate of the characters' rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from characterflywheel.characters import Character
from characterflywheel.characters.instructions import check_reply, follows_all
from characterflywheel.models import GenerationBackend, SamplingParams
from characterflywheel.simulate.landscape import Landscape
from characterflywheel.simulate.users import SimUser


@dataclass(frozen=True)
class Headroom:
    prompts: int
    k: int
    base_p_continue: float
    random_of_k_p_continue: float
    best_of_k_p_continue: float
    base_if_rate: float
    random_of_k_if_rate: float
    best_of_k_if_rate: float

    def rows(self) -> list[tuple[str, float, float]]:
        return [("base (mean of all samples)", self.base_p_continue, self.base_if_rate),
                (f"random of {self.k}", self.random_of_k_p_continue, self.random_of_k_if_rate),
                (f"best of {self.k}", self.best_of_k_p_continue, self.best_of_k_if_rate)]


def measure_headroom(backend: GenerationBackend, landscape: Landscape, users: Sequence[SimUser],
                     characters: Mapping[str, Character], k: int = 8, params: SamplingParams | None = None,
                     seed: int = 0) -> Headroom:
    params = params or SamplingParams(max_new_tokens=48, temperature=1.0, top_p=0.95)
    openings = [(user, characters[user.character_id], user.script_for(0)[0]) for user in users]
    conversations = [[{"role": "system", "content": c.system_prompt()}, {"role": "user", "content": line}]
                     for _, c, line in openings]
    samples = backend.chat(conversations, SamplingParams(**{**params.__dict__, "n": k, "seed": seed}), progress=True)
    p_continue = np.zeros((len(openings), k))
    follows = np.zeros((len(openings), k))
    for row, ((user, character, line), replies) in enumerate(zip(openings, samples)):
        history = [{"role": "user", "content": line}]
        for col, reply in enumerate(replies):
            p_continue[row, col] = landscape.react(user.taste, history, reply, character.persona).p_continue
            follows[row, col] = bool(follows_all(check_reply(reply, character.instructions, line)) is not False)
    rng = np.random.default_rng(seed)
    random_pick = rng.integers(k, size=len(openings))
    best_pick = p_continue.argmax(axis=1)
    rows = np.arange(len(openings))
    best_if = follows.max(axis=1)  # best of k by the checkers: does any sample follow all rules?
    return Headroom(
        prompts=len(openings), k=k,
        base_p_continue=float(p_continue.mean()),
        random_of_k_p_continue=float(p_continue[rows, random_pick].mean()),
        best_of_k_p_continue=float(p_continue[rows, best_pick].mean()),
        base_if_rate=float(follows.mean()),
        random_of_k_if_rate=float(follows[rows, random_pick].mean()),
        best_of_k_if_rate=float(best_if.mean()),
    )
