"""Openings read off character cards, and how a forced opening joins the model's continuation."""

from __future__ import annotations

from characterflywheel.characters.instructions import Instruction, check_reply, follows_all
from characterflywheel.sample.guided import card_openings, join_opening, rule_opening


def rules(*pairs: tuple[str, dict]) -> list[Instruction]:
    return [Instruction.from_dict({"type": kind, "params": params}) for kind, params in pairs]


def test_an_opening_keeps_every_opening_shaped_rule_of_a_card():
    card = rules(("use_catchphrase", {"phrase": "Yo ho ho!"}), ("start_with", {"prefix": "Ahoy"}),
                 ("use_emoji", {"n": 1}), ("max_words", {"n": 40}))
    opening = rule_opening(card, "✨")
    assert opening == "Ahoy! Yo ho ho! ✨"
    reply = join_opening(opening, "what brings ye to my ship?")
    assert follows_all(check_reply(reply, card, "hi")) is True
    assert rule_opening(rules(("must_include_word", {"word": "sweetheart"}))) == "Sweetheart"
    assert rule_opening(rules(("start_with", {"prefix": "Hail"}), ("lowercase_only", {}))) == "hail"
    assert rule_opening(rules(("max_words", {"n": 10}), ("lowercase_only", {}))) is None


def test_joining_keeps_punctuation_tight_and_spaces_words():
    assert join_opening("Hail", ", good traveler.") == "Hail, good traveler."
    assert join_opening("Beep boop.", "Hello human.") == "Beep boop. Hello human."
    assert join_opening("Woof! 🙂", "") == "Woof! 🙂"


def test_card_openings_read_the_shipped_cards_and_vary_the_emoji_by_prompt():
    opening = card_openings()
    assert opening({"character_id": "captain-saltbeard", "prompt_id": "p"}).startswith("Ahoy! Yo ho ho!")
    assert opening({"character_id": "nobody", "prompt_id": "p"}) is None
    emoji = {opening({"character_id": "pixel-pat", "prompt_id": f"p{i}"}) for i in range(40)}
    assert len(emoji) > 1
