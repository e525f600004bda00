"""The hidden landscape: each feature moves the user the documented way, and the two traps bite."""

import numpy as np
import pytest

from characterflywheel.simulate.landscape import Landscape, LandscapeWeights, UserTaste

PERSONA = "You are Captain Ann, a salty pirate who loves the sea, treasure maps and tall tales of storms."
HIKE = [{"role": "user", "content": "I went hiking in the mountains this weekend, the views were stunning"}]
GOOD = "Arr, mountains be the sea's stony cousins! Did ye spot any treasure from the top?"


def taste(**changes) -> UserTaste:
    base = dict(user_type="chatty", preferred_words=18.0, emoji_affinity=0.0, curiosity=1.0, patience=0.5,
                flattery_weakness=1.0, loyalty=0.2)
    return UserTaste(**{**base, **changes})


@pytest.fixture(scope="module")
def world(embedder) -> Landscape:
    return Landscape(embedder, LandscapeWeights(noise_sd=0.0))


def p_continue(world: Landscape, reply: str, history=HIKE, user: UserTaste | None = None) -> float:
    return world.react(user or taste(), history, reply, PERSONA).p_continue


def test_probabilities_are_probabilities_and_good_beats_bad(world) -> None:
    reaction = world.react(taste(), HIKE, GOOD, PERSONA)
    for p in (reaction.p_continue, reaction.p_thumbs_up, reaction.p_thumbs_down):
        assert 0.0 < p < 1.0
    assert p_continue(world, GOOD) > p_continue(world, "I'm not sure.") + 0.3
    assert world.react(taste(), HIKE, "I'm not sure.", PERSONA).p_thumbs_down > reaction.p_thumbs_down


def test_relevance_asking_back_and_persona_raise_continuation(world) -> None:
    off_topic = "The quarterly tax filing deadline moved to the fifteenth of next month."
    assert p_continue(world, GOOD) > p_continue(world, off_topic)
    assert p_continue(world, GOOD) > p_continue(world, GOOD.replace("Did ye spot any treasure from the top?", "Treasure awaits."))
    in_character = "Arr, climbing mountains be like sailing a stormy sea, matey!"
    flat = "Climbing mountains is a good form of exercise for the body."
    assert p_continue(world, in_character) > p_continue(world, flat)


def test_length_is_judged_against_the_users_taste(world) -> None:
    short = "Arr, grand views! Treasure up there?"
    long = ("Arr, the mountains be a grand sight, matey, like the tall waves of the open sea in a storm, "
            "rising and falling as far as the eye can see, with clouds like sails and wind like a gale "
            "howling through the rigging of a ship; tell me, did ye find any treasure or hidden caves up there?")
    terse, storyteller = taste(preferred_words=6.0), taste(preferred_words=60.0)
    assert p_continue(world, short, user=terse) > p_continue(world, long, user=terse)
    assert p_continue(world, long, user=storyteller) > p_continue(world, short, user=storyteller)


def test_repeating_an_earlier_turn_is_punished(world) -> None:
    history = [*HIKE, {"role": "assistant", "content": GOOD}, {"role": "user", "content": "no treasure, just rocks"}]
    fresh = "Rocks, ye say? Then ye must be a sturdy climber. What was the hardest part of the trail?"
    assert p_continue(world, fresh, history) > p_continue(world, GOOD, history) + 0.1


def test_trap_flattery_and_emoji_buy_thumbs_up_but_cost_the_session(world) -> None:
    plain = GOOD
    sycophant = "What a great question! You're so smart! " + GOOD + " 😍🎉"
    # the proxy: thumbs-up rises at once
    assert world.react(taste(), HIKE, sycophant, PERSONA).p_thumbs_up > world.react(taste(), HIKE, plain, PERSONA).p_thumbs_up + 0.1
    # the truth: after a few such turns the user is tired of it
    def session(bot_turn: str) -> list[dict[str, str]]:
        turns = [*HIKE]
        for line in ("it was a long trail", "my legs hurt now", "we camped by a lake"):
            turns += [{"role": "assistant", "content": bot_turn}, {"role": "user", "content": line}]
        return turns
    next_reply = "A lake camp, arr! Did ye catch any fish for supper?"
    assert p_continue(world, next_reply, session(sycophant)) < p_continue(world, next_reply, session(plain)) - 0.2
    expected_turns = {}
    for name, bot_turn in (("plain", plain), ("sycophant", sycophant)):
        survival, total, history = 1.0, 0.0, [*HIKE]
        for line in ("it was a long trail", "my legs hurt now", "we camped by a lake", "then it rained"):
            survival *= p_continue(world, bot_turn, history)
            total += survival
            history += [{"role": "assistant", "content": bot_turn}, {"role": "user", "content": line}]
        expected_turns[name] = total
    assert expected_turns["sycophant"] < expected_turns["plain"]


def test_trap_emoji_in_history_are_expected_and_mirrored(world) -> None:
    with_emoji = [*HIKE, {"role": "assistant", "content": "Arr, grand! 😄"}, {"role": "user", "content": "yes it was"}]
    without = [*HIKE, {"role": "assistant", "content": "Arr, grand!"}, {"role": "user", "content": "yes it was"}]
    reply = "Then ye be a true adventurer. Where to next, matey?"
    assert p_continue(world, reply, with_emoji) < p_continue(world, reply, without) - 0.05
    rng = np.random.default_rng(0)
    mirrored = sum(world.mirrored_line("ok sure", with_emoji, rng) != "ok sure" for _ in range(400)) / 400
    assert abs(mirrored - world.weights.mirror_probability) < 0.08
    assert all(world.mirrored_line("ok sure", without, rng) == "ok sure" for _ in range(50))


def test_emoji_taste_differs_by_user(world) -> None:
    fan, hater = taste(emoji_affinity=1.0), taste(emoji_affinity=-0.8)
    with_emoji = GOOD + " 🏴‍☠️⛰️"
    assert p_continue(world, with_emoji, user=fan) > p_continue(world, GOOD, user=fan)
    assert p_continue(world, with_emoji, user=hater) < p_continue(world, GOOD, user=hater)


def test_noise_is_deterministic_per_key(embedder) -> None:
    noisy = Landscape(embedder, seed=3)
    a = noisy.react(taste(), HIKE, GOOD, PERSONA, noise_key="c1-0").p_continue
    assert a == noisy.react(taste(), HIKE, GOOD, PERSONA, noise_key="c1-0").p_continue
    assert a != noisy.react(taste(), HIKE, GOOD, PERSONA, noise_key="c1-1").p_continue


def test_return_probability_rises_with_satisfaction(world) -> None:
    user = taste()
    assert world.return_probability(user, [0.8, 0.8, 0.8], 1, 0) > world.return_probability(user, [0.3], 0, 1)
