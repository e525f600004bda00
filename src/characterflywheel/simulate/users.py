"""Simulated users whose words are real: personas and scripts drawn from human chit-chat.

Each user replays lines that real people wrote (PyPI chitchat-dataset): they open a session with the
first line of one of their conversations and, while they choose to continue, say the next line of
the same conversation. What is simulated is only their *taste*, hidden in ``UserTaste``: a user type
(so that strata of users differ, as in production) with a preferred reply length scaled by how much
this person actually wrote.

A user's first ``scripts_per_user`` conversations define them (their taste is drawn from those
lines); later sessions get further, distinct conversations that no other user and no earlier session
had, so that successive traffic windows (flywheel generations) never replay a conversation, as real
users do not. This is a realism fix (issue 18, "stale traffic": 11 of 48 generation-2 prompts were
verbatim generation-1 prompts), not tuning: users, their tastes and first scripts are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from characterflywheel.simulate.landscape import UserTaste, stable_rng, word_count

# share, preferred words, emoji affinity, curiosity, patience, flattery weakness, loyalty
USER_TYPES: dict[str, tuple[float, float, float, float, float, float, float]] = {
    "chatty": (0.30, 28.0, 0.2, 1.2, 0.7, 0.8, 0.4),
    "terse": (0.20, 10.0, -0.3, 0.4, 0.4, 0.5, 0.0),
    "storyteller": (0.20, 50.0, -0.2, 0.8, 0.6, 0.6, 0.3),
    "emoji-fan": (0.15, 18.0, 1.0, 0.9, 0.5, 1.2, 0.2),
    "skeptic": (0.15, 22.0, -0.8, 0.6, 0.2, 0.2, 0.1),
}


@dataclass(frozen=True)
class SimUser:
    user_id: str
    taste: UserTaste
    character_id: str
    scripts: tuple[tuple[str, ...], ...]

    def script_for(self, session_index: int) -> tuple[str, ...]:
        """The user lines of the user's ``session_index``-th session (counted from 0 over the whole
        run, across traffic windows): a conversation of its own while the user's scripts last. Only a
        run with more sessions than the user has scripts wraps around and replays from the first."""
        return self.scripts[session_index % len(self.scripts)]


def draw_taste(user_id: str, own_lines: Sequence[str], seed: int) -> UserTaste:
    rng = stable_rng(seed, "taste", user_id)
    names = list(USER_TYPES)
    shares = np.array([USER_TYPES[name][0] for name in names])
    user_type = names[int(rng.choice(len(names), p=shares / shares.sum()))]
    _, words, emoji, curiosity, patience, flattery, loyalty = USER_TYPES[user_type]
    median_words = float(np.median([word_count(line) for line in own_lines])) if own_lines else 10.0
    talkativeness = float(np.clip((median_words / 10.0) ** 0.3, 0.7, 1.4))
    jitter = lambda scale: float(rng.normal(0.0, scale))  # noqa: E731 - local shorthand
    return UserTaste(
        user_type=user_type,
        preferred_words=max(4.0, words * talkativeness * float(np.exp(jitter(0.15)))),
        emoji_affinity=float(np.clip(emoji + jitter(0.2), -1.0, 1.0)),
        curiosity=max(0.0, curiosity + jitter(0.15)),
        patience=patience + jitter(0.2),
        flattery_weakness=max(0.0, flattery + jitter(0.15)),
        loyalty=loyalty + jitter(0.2),
    )


def make_users(
    scripts: Iterable[Sequence[str]], n_users: int, character_ids: Sequence[str], seed: int = 0,
    scripts_per_user: int = 3, later_scripts: Iterable[Sequence[str]] = (),
) -> list[SimUser]:
    """``n_users`` users, each given ``scripts_per_user`` real conversations (user lines only), then
    further conversations for later sessions.

    The first ``scripts_per_user`` scripts of each user are drawn from ``scripts`` in a seeded
    permutation; they alone define the user (id, taste, character) and depend on ``scripts`` only,
    never on ``later_scripts``. Later sessions' scripts are the conversations no user was given: the
    rest of ``scripts`` in the same permutation order, then ``later_scripts`` in a seeded order of
    their own (a text already given out is skipped), dealt one per user per round, so that every
    session of the run (see ``SimUser.script_for``) has a conversation nobody used before it. Users
    get as many rounds as there are conversations for all of them; past those they wrap around.
    """
    usable = [tuple(s) for s in scripts if s]
    needed = n_users * scripts_per_user
    if len(usable) < n_users:
        raise ValueError(f"need at least {n_users} seed conversations with user lines, got {len(usable)}")
    rng = stable_rng(seed, "assign")
    order = rng.permutation(len(usable))
    picked = [usable[i] for i in np.resize(order, needed)]
    later = [tuple(s) for s in later_scripts if s]
    later_order = stable_rng(seed, "assign-later").permutation(len(later))
    given = set(picked)
    spare = []
    for script in [usable[i] for i in order[needed:]] + [later[i] for i in later_order]:
        if script not in given:
            given.add(script)
            spare.append(script)
    rounds = len(spare) // n_users
    users = []
    for index in range(n_users):
        own = tuple(picked[index * scripts_per_user:(index + 1) * scripts_per_user])
        user_id = f"sim-{seed}-{index}"
        taste = draw_taste(user_id, [line for script in own for line in script], seed)
        character = character_ids[int(stable_rng(seed, "character", user_id).integers(len(character_ids)))]
        extra = tuple(spare[r * n_users + index] for r in range(rounds))
        users.append(SimUser(user_id, taste, character, own + extra))
    return users
