"""Character cards: the shipped set, system prompts, user files and one-line errors."""

import json
from pathlib import Path

import pytest

from characterflywheel.characters import (
    Character,
    CharacterCardError,
    UnknownCharacterError,
    character_by_id,
    load_characters,
    shipped_cards_path,
)
from characterflywheel.characters.instructions import INSTRUCTION_TYPES, check_reply, follows_all, sentence_count


def _card(**overrides: object) -> dict:
    card = {
        "id": "test-chef",
        "name": "Test Chef",
        "persona": "A chef for tests. Grumpy but fair.",
        "greeting": "Yes, chef.",
        "instructions": [{"type": "max_words", "params": {"n": 10}}],
    }
    card.update(overrides)
    return card


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "cards.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_shipped_cards_load_and_are_varied() -> None:
    characters = load_characters()
    assert len(characters) >= 20
    assert len({character.id for character in characters}) == len(characters)
    for character in characters:
        assert 1 <= len(character.instructions) <= 3, character.id
        assert 2 <= sentence_count(character.persona) <= 4, character.id
    used = {instruction.type for character in characters for instruction in character.instructions}
    assert used == set(INSTRUCTION_TYPES)


def test_shipped_greetings_follow_their_own_rules() -> None:
    # The greeting is the character's first message, so it should model the rules it sets.
    for character in load_characters():
        results = check_reply(character.greeting, character.instructions)
        assert follows_all(results) is not False, (character.id, results)


def test_system_prompt_holds_persona_and_every_rule() -> None:
    for character in load_characters():
        prompt = character.system_prompt()
        assert character.name in prompt and character.persona in prompt
        assert "Rules:" in prompt
        for instruction in character.instructions:
            assert f"- {instruction.describe()}" in prompt
        if character.catchphrase:
            assert character.catchphrase in prompt


def test_catchphrase_fills_use_catchphrase() -> None:
    pirate = character_by_id("captain-saltbeard")
    [instruction] = [i for i in pirate.instructions if i.type == "use_catchphrase"]
    assert instruction.params["phrase"] == pirate.catchphrase
    assert instruction.check(f"Ahoy! {pirate.catchphrase}") is True


def test_character_by_id_names_the_missing_id() -> None:
    assert character_by_id("grandma-rosie").name == "Grandma Rosie"
    with pytest.raises(KeyError) as raised:
        character_by_id("no-such-bot")
    assert isinstance(raised.value, UnknownCharacterError)
    assert str(raised.value).startswith("no character with id 'no-such-bot'")


def test_user_file_round_trips(tmp_path: Path) -> None:
    original = load_characters()[:3]
    path = _write(tmp_path, [character.to_dict() for character in original])
    assert load_characters(path) == original
    assert character_by_id(original[1].id, path) == original[1]


def test_user_file_without_optional_fields(tmp_path: Path) -> None:
    card = _card()
    del card["instructions"]
    [character] = load_characters(_write(tmp_path, {"characters": [card]}))
    assert character == Character("test-chef", "Test Chef", "A chef for tests. Grumpy but fair.", "Yes, chef.")
    assert "Rules:" not in character.system_prompt()


def test_shipped_path_is_package_data() -> None:
    assert shipped_cards_path().name == "cards.json" and shipped_cards_path().is_file()


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([_card(), _card(id="x", persona=5)], "card 1 (x): persona: must be a non-empty string"),
        ([_card(instructions=[{"type": "max_words", "params": {"n": -5}}])],
         "card 0 (test-chef): instructions[0].params.n: must be a positive integer (got -5)"),
        ([_card(instructions=[{"type": "be_nice"}])],
         "card 0 (test-chef): instructions[0].type: unknown instruction type 'be_nice'"),
        ([_card(instructions=[{"type": "use_catchphrase"}])],
         "card 0 (test-chef): instructions[0].params.phrase: missing"),
        ([_card(instructions=[{"type": "no_emoji"}, {"type": "no_emoji"}])],
         "instructions[1].type: no_emoji is used twice"),
        ([_card(instructions=[{"type": "no_emoji", "parms": {}}])], "instructions[0].parms: unknown key"),
        ([_card(instuctions=[])], "card 0 (test-chef): instuctions: unknown field"),
        ([_card(id="Grumpy Chef")], "card 0 (Grumpy Chef): id: must be a lowercase slug"),
        ([_card(), _card()], "card 1 (test-chef): id: duplicate id 'test-chef'"),
        ([_card(catchphrase="")], "card 0 (test-chef): catchphrase: must be a non-empty string"),
        (["not a card"], "card 0: card: must be an object"),
        ({"characters": []}, "characters: must be a non-empty list"),
        ({"cards": [_card()]}, "cards: unknown top-level field"),
    ],
)
def test_bad_file_is_one_line_naming_file_card_and_field(tmp_path: Path, document: object, expected: str) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(CharacterCardError) as raised:
        load_characters(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert isinstance(raised.value, ValueError)


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"characters": [', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON: line 1 column"):
        load_characters(broken)
    with pytest.raises(ValueError, match=r"absent\.json: cannot read cards file"):
        load_characters(tmp_path / "absent.json")
