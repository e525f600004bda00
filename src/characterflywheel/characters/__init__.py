"""Character cards: the personas a social-chat product hosts, each with its creator's instructions.

A card is a JSON object::

    {"id": "captain-saltbeard", "name": "Captain Saltbeard", "persona": "2-4 sentences ...",
     "greeting": "Ahoy, matey! ...", "catchphrase": "Yo ho ho!",            # catchphrase optional
     "instructions": [{"type": "start_with", "params": {"prefix": "Ahoy"}}, {"type": "use_catchphrase"}]}

A cards file is ``{"version": 1, "characters": [card, ...]}`` or just the list. The shipped file
(``cards.json`` next to this module) holds 20+ characters that together use every instruction type;
a user's own file with the same shape loads the same way, alone (``load_characters(path)``) or
added to the shipped cards (``load_characters(extra=path)``: a team's card with a shipped id
replaces it). Characters that exist only as a client's system message (user-created, no card) are
``characters.from_system``'s.

Assumptions and rules:

* ``id`` is a lowercase slug (``a-z``, ``0-9``, single hyphens) and unique within a file.
* Unknown keys are errors (a typo such as ``"instuctions"`` would otherwise silently drop rules).
* Instruction ``type`` comes from the catalogue in ``characterflywheel.characters.instructions`` and
  each card uses a type at most once (so per-type results of a reply are unambiguous).
* ``use_catchphrase`` without ``params.phrase`` takes the card's ``catchphrase``.
* Any problem is one ``CharacterCardError`` (a ValueError) line naming the file, the card index and
  id, and the field, e.g. ``cards.json: card 3 (sam-study-buddy): instructions[0].params.n: must be a
  positive integer (got -5)``.

``Character.system_prompt()`` is the system message the gateway sends: who the character is, then a
"Rules:" list with one creator sentence per instruction (``Instruction.describe()``). The greeting
is not in it: it is the character's opening message, shown before the user's first turn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from characterflywheel.characters.instructions import Instruction, InstructionError

__all__ = [
    "Character",
    "CharacterCardError",
    "Instruction",
    "UnknownCharacterError",
    "character_by_id",
    "load_characters",
    "shipped_cards_path",
]

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_REQUIRED_TEXT_FIELDS = ("id", "name", "persona", "greeting")
_CARD_FIELDS = frozenset({*_REQUIRED_TEXT_FIELDS, "catchphrase", "instructions"})
_FILE_FIELDS = frozenset({"version", "characters"})


class CharacterCardError(ValueError):
    """A bad cards file, as one line: ``<file>: card <i> (<id>): <field>: <problem>``."""


class UnknownCharacterError(KeyError):
    """No character has the requested id."""

    def __str__(self) -> str:  # KeyError would otherwise print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class Character:
    id: str
    name: str
    persona: str
    greeting: str
    instructions: tuple[Instruction, ...] = ()
    catchphrase: str | None = None

    def rules(self) -> list[str]:
        """One creator sentence per instruction, in card order."""
        return [instruction.describe() for instruction in self.instructions]

    def system_prompt(self) -> str:
        lines = [f"You are {self.name}. {self.persona}"]
        if self.catchphrase:
            lines.append(f'Your catchphrase: "{self.catchphrase}"')
        lines.append(f"Stay in character as {self.name} and talk with the user.")
        if self.instructions:
            lines.append("Rules:")
            lines.extend(f"- {rule}" for rule in self.rules())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON shape (``load_characters`` reads it back)."""
        card: dict[str, Any] = {"id": self.id, "name": self.name, "persona": self.persona, "greeting": self.greeting}
        if self.catchphrase is not None:
            card["catchphrase"] = self.catchphrase
        card["instructions"] = [instruction.to_dict() for instruction in self.instructions]
        return card


def shipped_cards_path() -> Path:
    return Path(str(resources.files(__name__).joinpath("cards.json")))


class _CardProblem(Exception):
    """Raised inside one card's parsing; the loader adds the file and card to the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")


def _text_field(card: Mapping[str, Any], name: str) -> str:
    value = card.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _CardProblem(name, f"must be a non-empty string (got {value!r})")
    return value.strip()


def _parse_instruction(raw: Any, index: int, catchphrase: str | None) -> Instruction:
    where = f"instructions[{index}]"
    if isinstance(raw, Mapping) and raw.get("type") == "use_catchphrase":
        params = dict(raw.get("params") or {})
        if "phrase" not in params:
            if catchphrase is None:
                raise _CardProblem(f"{where}.params.phrase", "missing: give params.phrase or a card catchphrase")
            params["phrase"] = catchphrase
        raw = {**raw, "params": params}
    try:
        return Instruction.from_dict(raw)
    except InstructionError as error:
        raise _CardProblem(f"{where}.{error.field}", error.message) from None


def _parse_instructions(raw: Any, catchphrase: str | None) -> tuple[Instruction, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _CardProblem("instructions", f"must be a list (got {type(raw).__name__})")
    instructions: list[Instruction] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        instruction = _parse_instruction(item, index, catchphrase)
        if instruction.type in seen:
            raise _CardProblem(f"instructions[{index}].type", f"{instruction.type} is used twice in this card")
        seen.add(instruction.type)
        instructions.append(instruction)
    return tuple(instructions)


def _parse_card(card: Any) -> Character:
    if not isinstance(card, Mapping):
        raise _CardProblem("card", f"must be an object (got {type(card).__name__})")
    for key in card:
        if key not in _CARD_FIELDS:
            raise _CardProblem(str(key), f"unknown field (allowed: {', '.join(sorted(_CARD_FIELDS))})")
    texts = {name: _text_field(card, name) for name in _REQUIRED_TEXT_FIELDS}
    if not _SLUG.match(texts["id"]):
        raise _CardProblem("id", f"must be a lowercase slug like 'grumpy-chef' (got {texts['id']!r})")
    catchphrase = _text_field(card, "catchphrase") if card.get("catchphrase") is not None else None
    instructions = _parse_instructions(card.get("instructions"), catchphrase)
    return Character(instructions=instructions, catchphrase=catchphrase, **texts)


def _card_label(index: int, card: Any) -> str:
    card_id = card.get("id") if isinstance(card, Mapping) else None
    return f"card {index} ({card_id})" if isinstance(card_id, str) and card_id else f"card {index}"


def _read_cards(path: Path) -> list[Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CharacterCardError(f"{path}: cannot read cards file: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise CharacterCardError(f"{path}: not valid JSON: {where}: {error.msg}") from None
    if isinstance(document, Mapping):
        for key in document:
            if key not in _FILE_FIELDS:
                raise CharacterCardError(f"{path}: {key}: unknown top-level field (allowed: characters, version)")
        document = document.get("characters")
    if not isinstance(document, list) or not document:
        raise CharacterCardError(f"{path}: characters: must be a non-empty list of cards")
    return document


def _load_uncached(path: Path) -> tuple[Character, ...]:
    characters: list[Character] = []
    seen_ids: set[str] = set()
    for index, raw_card in enumerate(_read_cards(path)):
        label = _card_label(index, raw_card)
        try:
            character = _parse_card(raw_card)
            if character.id in seen_ids:
                raise _CardProblem("id", f"duplicate id {character.id!r}")
        except _CardProblem as problem:
            raise CharacterCardError(f"{path}: {label}: {problem}") from None
        seen_ids.add(character.id)
        characters.append(character)
    return tuple(characters)


@lru_cache(maxsize=1)
def _shipped_characters() -> tuple[Character, ...]:
    return _load_uncached(shipped_cards_path())


def load_characters(path: Path | str | None = None, *, extra: Path | str | None = None) -> list[Character]:
    """The characters in ``path`` (default: the shipped cards), then a team's own cards file ``extra``
    (same format): a team card whose id is already there replaces that card in place, a new id is
    added at the end. Raises CharacterCardError naming the file, card and field."""
    if path is None:
        characters = list(_shipped_characters())  # parsed once per process; a fresh list each call
    else:
        characters = list(_load_uncached(Path(path)))
    if extra is None:
        return characters
    team = {character.id: character for character in _load_uncached(Path(extra))}
    merged = [team.pop(character.id, character) for character in characters]
    return [*merged, *team.values()]


def character_by_id(character_id: str, path: Path | str | None = None) -> Character:
    """The character with ``character_id``; UnknownCharacterError (a KeyError) names it if absent."""
    characters = load_characters(path)
    for character in characters:
        if character.id == character_id:
            return character
    known = ", ".join(character.id for character in characters)
    raise UnknownCharacterError(f"no character with id {character_id!r} (known: {known})")
