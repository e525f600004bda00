"""A team's own cards file (``characters.cards``): added to the shipped cards, overriding by id,
read by every stage with a config, and a bad file is one line naming the file, card and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from characterflywheel.characters import CharacterCardError, load_characters
from characterflywheel.config import ConfigError, load_config
from characterflywheel.pipeline import characters_for

TEAM_CARDS = [
    {"id": "captain-saltbeard", "name": "Captain Saltbeard", "persona": "A retired pirate. Now he grows roses.",
     "greeting": "Ahoy.", "instructions": [{"type": "no_emoji"}]},
    {"id": "team-barista", "name": "Bea the Barista", "persona": "A cheerful barista. Knows every bean.",
     "greeting": "What can I brew for you?",
     "instructions": [{"type": "max_words", "params": {"n": 25}}, {"type": "must_include_word",
                                                                     "params": {"word": "coffee"}}]},
]


def write_cards(tmp_path: Path, cards: object, name: str = "team_cards.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"version": 1, "characters": cards}), encoding="utf-8")
    return path


def test_team_cards_are_added_and_override_shipped_ids_in_place(tmp_path: Path) -> None:
    shipped = load_characters()
    merged = load_characters(extra=write_cards(tmp_path, TEAM_CARDS))
    assert len(merged) == len(shipped) + 1
    assert [c.id for c in merged] == [*(c.id for c in shipped), "team-barista"]  # the override keeps its place
    pirate = next(c for c in merged if c.id == "captain-saltbeard")
    assert pirate.persona == "A retired pirate. Now he grows roses."
    assert [i.type for i in pirate.instructions] == ["no_emoji"]
    barista = merged[-1]
    assert barista.instructions[1].check("One coffee, coming up!") is True
    # The shipped cards themselves are untouched (they are cached per process).
    assert load_characters() == shipped


def test_characters_for_reads_the_config_key(tmp_path: Path) -> None:
    path = write_cards(tmp_path, TEAM_CARDS)
    assert characters_for(load_config()) == load_characters()  # default: the shipped cards only
    config = load_config(overrides=[f"characters.cards={json.dumps(str(path))}"])
    assert config.characters.cards == str(path)
    assert "team-barista" in {c.id for c in characters_for(config)}


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ({**TEAM_CARDS[1], "instructions": [{"type": "max_words", "params": {"n": 0}}]},
         "card 1 (team-barista): instructions[0].params.n: must be a positive integer (got 0)"),
        ({**TEAM_CARDS[1], "greting": "typo"}, "card 1 (team-barista): greting: unknown field"),
        ({**TEAM_CARDS[1], "id": "Team Barista"}, "card 1 (Team Barista): id: must be a lowercase slug"),
    ],
)
def test_a_bad_team_card_is_one_line_naming_file_card_and_field(tmp_path: Path, card: dict, expected: str) -> None:
    path = write_cards(tmp_path, [TEAM_CARDS[0], card])
    with pytest.raises(CharacterCardError) as raised:
        load_characters(extra=path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and expected in message

    # The config refuses it when it loads (before any stage runs), naming the key as well.
    toml = tmp_path / "team.toml"
    toml.write_text(f"[characters]\ncards = {json.dumps(str(path))}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(toml)
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"{toml}: characters.cards: ") and expected in line


def test_a_missing_team_cards_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"characters\.cards: .*absent\.json: cannot read cards file"):
        load_config(overrides=[f"characters.cards={json.dumps(str(tmp_path / 'absent.json'))}"])


def test_characters_for_names_the_key_when_the_file_went_bad_after_loading(tmp_path: Path) -> None:
    path = write_cards(tmp_path, TEAM_CARDS)
    config = load_config(overrides=[f"characters.cards={json.dumps(str(path))}"])
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^characters\.cards: .*team_cards\.json: not valid JSON"):
        characters_for(config)
