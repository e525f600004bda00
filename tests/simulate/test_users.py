"""Simulated users: the population is fixed by its first scripts, and traffic windows never replay a
conversation (issue 18, "stale traffic"). No model and no server: real seed scripts only."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from characterflywheel import demo
from characterflywheel.characters import load_characters
from characterflywheel.config import load_config
from characterflywheel.demo import seed_scripts
from characterflywheel.simulate.landscape import stable_rng
from characterflywheel.simulate.traffic import SessionDriver, SessionOutcome, SimulationReport, simulate_days
from characterflywheel.simulate.users import SimUser, draw_taste, make_users

USERS, DAYS, WINDOWS = 48, 2, 6  # the demo preset's world, generations 0..5


def old_make_users(scripts: Sequence[Sequence[str]], n_users: int, character_ids: Sequence[str],
                   seed: int = 0, scripts_per_user: int = 3) -> list[SimUser]:
    """``make_users`` as it was before later sessions got scripts of their own (verbatim)."""
    usable = [tuple(s) for s in scripts if s]
    needed = n_users * scripts_per_user
    order = stable_rng(seed, "assign").permutation(len(usable))
    picked = [usable[i] for i in np.resize(order, needed)]
    users = []
    for index in range(n_users):
        own = tuple(picked[index * scripts_per_user:(index + 1) * scripts_per_user])
        user_id = f"sim-{seed}-{index}"
        taste = draw_taste(user_id, [line for script in own for line in script], seed)
        character = character_ids[int(stable_rng(seed, "character", user_id).integers(len(character_ids)))]
        users.append(SimUser(user_id, taste, character, own))
    return users


@pytest.fixture(scope="module")
def all_scripts() -> list[list[str]]:
    return seed_scripts()


@pytest.fixture(scope="module")
def world() -> demo.World:
    """``demo.build_world`` for the demo preset's 48 users, with a stand-in for the embedder."""
    patch = pytest.MonkeyPatch()
    patch.setattr(demo, "load_embedder", lambda *a, **k: None)  # demo binds it at import
    try:
        config = load_config(preset="demo", overrides=[f"world.users={USERS}", f"world.days={DAYS}", "seed=0"])
        return demo.build_world(config)
    finally:
        patch.undo()


def test_population_does_not_depend_on_later_scripts(all_scripts, world) -> None:
    characters = sorted(c.id for c in load_characters())
    pool = seed_scripts(limit=max(400, USERS * 8))
    assert all_scripts[: len(pool)] == pool, "a larger limit reads the same conversations first"
    for users in (world.users, make_users(pool, USERS, characters), make_users(pool, USERS, characters,
                                                                                later_scripts=all_scripts[100:])):
        old = old_make_users(pool, USERS, characters)
        assert [u.user_id for u in users] == [u.user_id for u in old]
        assert [u.taste for u in users] == [u.taste for u in old]
        assert [u.character_id for u in users] == [u.character_id for u in old]
        assert [u.scripts[:3] for u in users] == [u.scripts for u in old]
        assert all(len(u.scripts) > 3 for u in users)
    # later scripts are each given to one session only, never one a user was built from
    scripts = [s for u in world.users for s in u.scripts]
    assert len(set(scripts)) == len(scripts) == USERS * (len(scripts) // USERS)
    assert len(world.users[0].scripts) >= WINDOWS * DAYS


def _driver(**kw) -> SessionDriver:
    return SessionDriver("http://127.0.0.1:9/v1", landscape=None, personas={}, max_turns=10_000, **kw)


def test_windows_never_replay_a_script(world, tmp_path: Path, monkeypatch) -> None:
    # the drivers simulate_traffic builds for generations 0..5 (no server: simulate_days is stubbed)
    drivers: dict[int | None, SessionDriver] = {}
    config = load_config(preset="demo", overrides=[f"world.users={USERS}", f"world.days={DAYS}"])
    for generation in (None, *range(WINDOWS)):
        def capture(driver, users, days, concurrency=32, on_session=None, generation=generation):
            assert days == DAYS
            drivers[generation] = driver
            return SimulationReport()

        monkeypatch.setattr(demo, "simulate_days", capture)  # demo binds it at import
        demo.simulate_traffic(config, world, tmp_path, base_url="http://127.0.0.1:9/v1", generation=generation)
    monkeypatch.undo()
    assert drivers[None].session_offset == drivers[0].session_offset == 0
    for driver in drivers.values():
        driver.max_turns = 10_000  # compare whole scripts, not the lines a session had room for

    # each window's sessions, with every user returning every day (the most sessions a window has)
    used: list[set[tuple[str, ...]]] = []
    for generation in range(WINDOWS):
        driver = drivers[generation]
        scripts: set[tuple[str, ...]] = set()

        def run(user, day, session_index, driver=driver, scripts=scripts):
            scripts.add(driver.script(user, session_index))
            return SessionOutcome(user.user_id, day, 1, (0.5,), 0, 0, True)

        driver.run = run
        report = simulate_days(driver, world.users, DAYS, concurrency=4)
        assert len(report.sessions) == USERS * DAYS
        assert len(scripts) == USERS * DAYS, "no two sessions of a window share a script"
        used.append(scripts)
    for g in range(WINDOWS):
        for h in range(g):
            assert not used[g] & used[h], f"window {g} replays scripts of window {h}"

    # generation 0 (and the window with no generation) says what it always did: the first scripts
    old = old_make_users(seed_scripts(limit=max(400, USERS * 8)), USERS, sorted(c.id for c in load_characters()))
    assert used[0] == {u.scripts[s] for u in old for s in range(DAYS)}
    assert all(drivers[None].script(u, s) == drivers[0].script(u, s) for u in world.users for s in range(DAYS))


def test_scripts_wrap_around_only_when_they_run_out() -> None:
    scripts = [[f"c{i} a", f"c{i} b"] for i in range(10)]
    users = make_users(scripts, 2, ["x"], scripts_per_user=2)
    assert [len(u.scripts) for u in users] == [5, 5]
    assert len({s for u in users for s in u.scripts}) == 10
    user = users[0]
    assert [user.script_for(i) for i in range(5, 10)] == list(user.scripts)
    assert _driver(session_offset=3).script(user, 1) == user.scripts[4]


def test_the_truth_set_is_never_served(world) -> None:
    """The report's truth set (demo.truth_set) comes from conversations no window ever serves, so no
    generation can have trained on an evaluation prompt."""
    truth = demo.truth_set(world, 64)
    assert len(truth) == 64 and len({p["prompt_id"] for p in truth}) == 64
    truth_lines = {tuple(s) for s in seed_scripts()[-demo.TRUTH_SCRIPTS:]}
    served = {tuple(script) for user in world.users for script in user.scripts}
    assert not truth_lines & served
    users = {user.user_id: user for user in world.users}
    for prompt in truth:  # each prompt is spoken by a real simulated user to that user's character
        assert users[prompt["user_id"]].character_id == prompt["character_id"]
        assert [m["role"] for m in prompt["prompt"]] == ["system", "user"]


def test_newcomers_join_the_last_window_with_their_own_ids_and_tastes(world) -> None:
    """``flywheel.final_window_scale``: the regular users unchanged, then as many again who never came."""
    config = load_config(preset="demo", overrides=[f"world.users={USERS}", "seed=0"])
    bigger = demo.with_newcomers(config, world, USERS)
    assert bigger.users[:USERS] == world.users and len(bigger.users) == 2 * USERS
    regular = {u.user_id for u in world.users}
    newcomers = bigger.users[USERS:]
    assert len({u.user_id for u in newcomers}) == USERS and not regular & {u.user_id for u in newcomers}
    assert len({repr(u.taste) for u in newcomers}) == USERS
    assert bigger.landscape is world.landscape and bigger.characters is world.characters
