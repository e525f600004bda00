"""User-created characters: ids derived from the system message, creator rules parsed from plain
English, and the card a conversation is held to."""

from __future__ import annotations

import pytest

from characterflywheel.characters import load_characters
from characterflywheel.characters.from_system import (
    character_from_system_message,
    conversation_card,
    parse_rules,
    user_character_id,
)
from characterflywheel.characters.instructions import INSTRUCTION_TYPES, Instruction


def rules(text: str) -> list[dict]:
    return [instruction.to_dict() for instruction in parse_rules(text)]


def rule(type_name: str, **params: object) -> dict:
    return Instruction(type_name, params).to_dict()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Never use emoji.", [rule("no_emoji")]),
        ("Don't use any emojis!", [rule("no_emoji")]),
        ("Always end with a question.", [rule("end_with_question")]),
        ("Don't forget to end every message with a question!", [rule("end_with_question")]),
        ("Never end your replies with a question.", [rule("never_end_with_question")]),
        ("Keep replies under 40 words.", [rule("max_words", n=39)]),  # "under" is strict
        ("Keep every reply to 40 words or fewer.", [rule("max_words", n=40)]),
        ("Never write more than 50 words.", [rule("max_words", n=50)]),
        ("Write at least 30 words in every answer.", [rule("min_words", n=30)]),
        ("No more than 3 sentences.", [rule("max_sentences", n=3)]),
        ("Answer in a single sentence.", [rule("max_sentences", n=1)]),
        ("Always start with 'Ahoy!'", [rule("start_with", prefix="Ahoy!")]),
        ("Say 'Shiver me timbers' in every reply.", [rule("must_include_word", word="Shiver me timbers")]),
        ('Never say the words "okay" or "cool".', [rule("forbidden_words", words=["okay", "cool"])]),
        ("Only lowercase.", [rule("lowercase_only")]),
        ("Never shout in all caps.", [rule("no_uppercase_shouting")]),
        ("Don't mention that you are an AI.", [rule("no_ai_disclaimer")]),
        ("Never reveal you’re a bot.", [rule("no_ai_disclaimer")]),
        ("No bullet points, ever.", [rule("no_lists")]),
        ("Never share links or URLs.", [rule("no_urls")]),
        ("Speak formally: no contractions.", [rule("formal_register")]),
        ("Keep it casual.", [rule("casual_register")]),
        ("Use at least 2 emojis per message.", [rule("use_emoji", n=2)]),
        ("Answer in one paragraph.", [rule("one_paragraph")]),
        ("Never talk about yourself.", [rule("no_first_person")]),
        ('Address the user directly as "you".', [rule("second_person")]),
        ("When asked about Paris or France, recommend “Le Marais”.",
         [rule("mention_when_asked", triggers=["Paris", "France"], mention=["Le Marais"])]),
        ("Mention 'Gibbon' whenever the user talks about Rome or the empire.",
         [rule("mention_when_asked", triggers=["Rome", "empire"], mention=["Gibbon"])]),
        ('Your catchphrase: "Yo ho ho!"\nWork your catchphrase into every reply.',
         [rule("use_catchphrase", phrase="Yo ho ho!")]),
    ],
)
def test_common_phrasings_parse_into_instructions(text: str, expected: list[dict]) -> None:
    assert rules(text) == expected


def test_several_rules_in_one_message_and_negation_scope() -> None:
    text = ("You are Ann, a pirate who has never seen snow.\n"
            "- Never use emoji, but always end with a question.\n"
            "- Reply in 2 sentences or fewer and don't share links.")
    assert {r["type"]: r["params"] for r in rules(text)} == {
        "no_emoji": {}, "end_with_question": {}, "max_sentences": {"n": 2}, "no_urls": {}}


@pytest.mark.parametrize(
    "text",
    [
        "You are Ann, a pirate who loves treasure and has never tasted seawater.",
        "Stay in character as Ann and talk with the user.",
        "Ann loves emoji and keeps a list of every port she has seen.",
        "She answers questions about ships and speaks in a few words at a time.",
        "Your catchphrase: \"Yo ho ho!\"",  # declared, never asked for
        "You write 3 sentences of poetry every morning.",
        "",
    ],
)
def test_text_that_states_no_rule_is_left_alone(text: str) -> None:
    assert parse_rules(text) == ()


def test_every_card_system_prompt_parses_back_into_its_instructions() -> None:
    # Instruction.describe() sentences are the canonical phrasing of every type in the catalogue.
    covered = set()
    for character in load_characters():
        parsed = parse_rules(character.system_prompt())
        assert sorted(parsed, key=lambda i: i.type) == sorted(character.instructions, key=lambda i: i.type), \
            character.id
        covered |= {instruction.type for instruction in parsed}
    assert covered == set(INSTRUCTION_TYPES)


def test_contradicting_rules_keep_the_first_and_a_type_is_kept_once() -> None:
    text = "Never end with a question. Always end with a question. Keep it under 20 words. Max 50 words."
    assert rules(text) == [rule("never_end_with_question"), rule("max_words", n=19)]


def test_user_character_id_is_stable_and_distinct() -> None:
    first = user_character_id("You are Ann, a pirate.")
    assert first.startswith("user-") and len(first) == len("user-") + 10
    assert int(first.removeprefix("user-"), 16) >= 0
    assert user_character_id("  You are Ann, a pirate.\n") == first  # surrounding whitespace is not a new character
    assert user_character_id("You are Bob, a baker.") != first


def test_character_from_system_message() -> None:
    text = "You are Captain Ann. A pirate of the seven seas. Never use emoji."
    character = character_from_system_message(text)
    assert character.id == user_character_id(text) and character.name == "Captain Ann"
    assert character.persona == text and character.greeting == ""
    assert [i.type for i in character.instructions] == ["no_emoji"]
    assert character_from_system_message(text, "my-ann").id == "my-ann"
    assert character_from_system_message("a helpful friend").name == user_character_id("a helpful friend")


def test_conversation_card_prefers_the_card_then_the_system_message() -> None:
    cards = {card.id: card for card in load_characters()}
    own = [{"role": "system", "content": "You are Zed. Never use emoji."}, {"role": "user", "content": "hi"}]
    assert conversation_card("unit-b0p", own, cards) is cards["unit-b0p"]
    derived = conversation_card(user_character_id(own[0]["content"]), own, cards)
    assert derived is not None and [i.type for i in derived.instructions] == ["no_emoji"]
    assert conversation_card("none", own, cards).id == user_character_id(own[0]["content"])
    assert conversation_card("team-zed", own, cards).id == "team-zed"
    assert conversation_card("user-0123456789", [{"role": "user", "content": "hi"}], cards) is None
    assert conversation_card(None, [], cards) is None
