"""User-created characters: a character that exists only as a client's own system message.

A social-chat product lets users write their own characters; such a request reaches the gateway with
its own system message and no card (``metadata.character_id`` absent, or an id the gateway has no
card for). So that the loop treats these characters like carded ones (their own stratum in
curation, their rules checked in rejection sampling, evaluation and the A/B guardrail), this module
gives each one:

* an **id**: ``user_character_id(text)`` is ``user-`` + the first 10 hex digits of the SHA-256 of
  the stripped system message, so the same character gets the same id in every process and every
  log, and two different system messages (almost surely) do not share one;
* **rules**: ``parse_rules(text)`` turns the creator rules stated in plain English into the
  instruction types of ``characterflywheel.characters.instructions`` where it can; anything it does
  not recognise is ignored, so a character is checked only on the rules it clearly states.
  ``character_from_system_message`` wraps both into a ``Character``; ``conversation_card`` is what
  the readers call: the card with the conversation's id, else the character its system message
  describes.

Phrasings recognised (case-insensitive; quotes may be "double", 'single' or “curly”):

* ``no_emoji`` "never use emoji", "no emojis", "emoji-free"; ``use_emoji`` "use at least 2 emoji",
  "always include an emoji";
* ``max_words`` / ``min_words`` / ``max_sentences``: a count of words or sentences with a bound,
  e.g. "keep replies under 40 words", "40 words or fewer", "no more than 3 sentences", "answer in a
  single sentence", "write at least 30 words", "never write more than 50 words". Strict bounds are
  exclusive: "under 40 words" is at most 39, "more than 30 words" at least 31;
* ``end_with_question`` "always end with a question", "ask the user a question at the end";
  ``never_end_with_question`` "never end a reply with a question", "don't ask questions";
* ``start_with`` "always start with 'Ahoy!'", "begin every reply with "Hail"";
* ``use_catchphrase`` "work your catchphrase "Yo ho ho!" into every reply" (the phrase quoted there,
  or declared as ``Your catchphrase: "..."``); ``must_include_word`` "say 'Shiver me timbers' in
  every reply", "use the word "woof" in every reply"; ``forbidden_words`` "never say the words
  "okay" or "cool"";
* ``mention_when_asked`` "whenever the user brings up pizza, mention "pineapple"" (also "when
  someone asks about X, recommend Y" and "mention Y whenever the user talks about X");
* ``lowercase_only`` "only lowercase", "never use capital letters"; ``no_uppercase_shouting``
  "never shout", "no all caps";
* ``formal_register`` "speak formally", "no contractions"; ``casual_register`` "keep it casual",
  "use contractions or slang";
* ``one_paragraph`` "answer in a single paragraph", "no blank lines"; ``no_lists`` "no bullet
  points", "never use lists"; ``no_urls`` "never share links";
* ``second_person`` "address the user directly as "you""; ``no_first_person`` "never talk about
  yourself", "do not use "I" or "me"";
* ``no_ai_disclaimer`` "don't mention that you are an AI", "never reveal you're a bot", "never break
  character".

Every sentence ``Instruction.describe()`` writes is recognised, so a card's own ``system_prompt()``
parses back into its instructions. A rule type is kept once (the first statement wins) and a rule
contradicting an earlier one (e.g. "end with a question" after "never end with a question") is
dropped. Negation is read from "never / don't / do not / no / avoid / without" earlier in the same
clause, up to a "but / always / however / instead / also"; "don't forget to" is not a negation.

Why our own code: no library parses creator rules into checkable instructions. IFEval-style
benchmarks generate their instructions from templates and never read them back from prose, and a
model-based parser would make a reply's rule check depend on a model; these rules must be
deterministic, explainable and cheap enough to run on every sampled reply.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from characterflywheel.characters import Character
from characterflywheel.characters.instructions import Instruction, InstructionError

__all__ = [
    "USER_CHARACTER_PREFIX",
    "character_from_system_message",
    "conversation_card",
    "parse_rules",
    "system_message_of",
    "user_character_id",
]

USER_CHARACTER_PREFIX = "user-"
_ID_HEX_DIGITS = 10

# --------------------------------------------------------------------------------------------------
# Ids and Characters
# --------------------------------------------------------------------------------------------------


def user_character_id(system_message: str) -> str:
    """``user-<first 10 hex of sha256(stripped system message)>``: stable across processes and logs."""
    digest = hashlib.sha256(system_message.strip().encode("utf-8")).hexdigest()
    return f"{USER_CHARACTER_PREFIX}{digest[:_ID_HEX_DIGITS]}"


_NAME = re.compile(r"^\s*You are ([A-Z][\w'’-]*(?:[ ][A-Z][\w'’-]*){0,3})")


@lru_cache(maxsize=4096)  # readers call this once per sampled reply; the text decides the result
def character_from_system_message(system_message: str, character_id: str | None = None) -> Character:
    """The character a system message describes: ``character_id`` (default: ``user_character_id``),
    the name after a leading "You are ..." (else the id), the message as persona, the parsed rules.
    It has no greeting: the user wrote no opening message for it."""
    character_id = character_id or user_character_id(system_message)
    named = _NAME.match(system_message)
    return Character(id=character_id, name=named.group(1) if named else character_id,
                     persona=system_message.strip(), greeting="", instructions=parse_rules(system_message))


def system_message_of(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The text of the conversation's opening system turn, None when it has none (or a blank one)."""
    if not messages or messages[0].get("role") not in ("system", "developer"):
        return None
    content = messages[0].get("content")
    return content if isinstance(content, str) and content.strip() else None


def conversation_card(character_id: str | None, messages: Sequence[Mapping[str, Any]],
                      cards: Mapping[str, Character]) -> Character | None:
    """The card a conversation is held to: ``cards[character_id]``; else (a user-created character,
    or a card this run does not know) the character its system message describes; None with neither."""
    card = cards.get(str(character_id)) if character_id is not None else None
    if card is not None:
        return card
    system_message = system_message_of(messages)
    if system_message is None:
        return None
    own_id = None if character_id in (None, "", "none") else str(character_id)
    return character_from_system_message(system_message, own_id)


# --------------------------------------------------------------------------------------------------
# Clauses: the message cut into short statements, quoted phrases masked out
# --------------------------------------------------------------------------------------------------

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: never in a creator's text
_QUOTED = re.compile(r'"([^"\n]*)"|“([^”\n]*)”|(?<![\w])\'([^\'\n]*?)\'(?![\w])')
_PLACEHOLDER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
_QUOTE = f"{_OPEN}\\d+{_CLOSE}"
_BULLET = re.compile(r"^\s*(?:[-*•‣◦▪▸]|\d{1,2}[.)])\s+")
_CLAUSE_END = re.compile(r"(?<=[.!?;:])\s+")
_NEGATION = re.compile(r"\b(?:never|not|no|don't|dont|do not|does not|doesn't|avoid|without|zero|nothing|nor"
                       r"|refrain)\b")
_SCOPE_BREAK = re.compile(r"\b(?:but|always|however|instead|rather|also|except)\b")
_NOT_NEGATIONS = re.compile(r"\b(?:don't|do not|never) forget to\b|\bno matter (?:what|how|when|who)\b",
                            re.IGNORECASE)


@dataclass(frozen=True)
class _Clause:
    text: str  # quoted phrases replaced by placeholders; apostrophes straightened
    quotes: tuple[str, ...]  # every quoted phrase of the message, by placeholder number

    @property
    def lower(self) -> str:
        return self.text.lower()

    def quoted(self) -> list[str]:
        """The quoted phrases of this clause, in order."""
        return [self.quotes[int(number)] for number in _PLACEHOLDER.findall(self.text)]

    def restore(self, fragment: str) -> str:
        return _PLACEHOLDER.sub(lambda match: self.quotes[int(match.group(1))], fragment)

    def negated(self, position: int) -> bool:
        """A negation earlier in the clause, not cut off by "but" / "always" / ... before ``position``."""
        before = self.lower[:position]
        breaks = list(_SCOPE_BREAK.finditer(before))
        if breaks:
            before = before[breaks[-1].end():]
        return _NEGATION.search(before) is not None


def _mask_quotes(text: str) -> tuple[str, tuple[str, ...]]:
    quotes: list[str] = []

    def mask(match: re.Match[str]) -> str:
        quotes.append(next(group for group in match.groups() if group is not None).strip())
        return f"{_OPEN}{len(quotes) - 1}{_CLOSE}"

    return _QUOTED.sub(mask, text), tuple(quotes)


def _clauses(masked: str, quotes: tuple[str, ...]) -> list[_Clause]:
    clauses = []
    for line in masked.splitlines():
        line = _BULLET.sub("", line)
        for piece in _CLAUSE_END.split(line):
            piece = _NOT_NEGATIONS.sub(lambda m: "always" if "forget" in m.group().lower() else "", piece)
            piece = piece.strip().rstrip(" .!?;:")
            if piece:
                clauses.append(_Clause(piece, quotes))
    return clauses


# --------------------------------------------------------------------------------------------------
# Matchers: one per family of rules, each clause -> an Instruction or None
# --------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "single": 1, "a single": 1, "two": 2, "three": 3, "four": 4,
                 "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
                 "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
                 "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "a hundred": 100}
_NUMBER = r"\d{1,4}|" + "|".join(sorted((re.escape(word) for word in _NUMBER_WORDS), key=len, reverse=True))
_AT_MOST = (r"at most|no more than|not more than|up to|a maximum of|maximum of|max(?:imum)?|no longer than|"
            r"not exceed(?:ing)?|within|limit(?:ed)?(?: \w+){0,3} to|keep(?: \w+){0,3} to|stick to|"
            r"cap(?:ped)?(?: \w+){0,3} at|in")
_UNDER = r"under|fewer than|less than|below|shorter than"
_AT_LEAST = r"at least|no fewer than|no less than|not less than|a minimum of|minimum of|min(?:imum)?"
_OVER = r"more than|over|longer than|above"


_NOT_A_COUNT = r"(?!(?:few|couple|lot|many|dozen|handful|hundred|more|less|fewer)\b)"  # "in a few words"


def _count_pattern(unit: str) -> re.Pattern[str]:
    return re.compile(
        rf"(?:\b(?P<pre_max>{_AT_MOST})\s+|\b(?P<pre_under>{_UNDER})\s+|\b(?P<pre_min>{_AT_LEAST})\s+"
        rf"|\b(?P<pre_over>{_OVER})\s+)?\b(?P<n>{_NUMBER})(?P<plus>\+)?\s+(?:{_NOT_A_COUNT}\w+\s+)?{unit}\b"
        r"(?P<post>\s+or\s+(?:fewer|less|shorter|under)|\s+(?:max(?:imum)?|at most|tops)"
        r"|\s+or\s+(?:more|longer|over)|\s+(?:minimum|at least))?")


_WORDS = _count_pattern(r"words?")
_SENTENCES = _count_pattern(r"sentences?")


def _number(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBER_WORDS[text]


def _count_rule(clause: _Clause, pattern: re.Pattern[str], at_most: str, at_least: str | None) -> Instruction | None:
    match = pattern.search(clause.lower)
    if match is None:
        return None
    n, post = _number(match.group("n")), (match.group("post") or "").strip()
    if post:
        upper = post.startswith(("or fewer", "or less", "or shorter", "or under", "max", "at most", "tops"))
    elif match.group("plus"):
        upper = False
    elif match.group("pre_max") or match.group("pre_under"):
        upper = True
        n -= 1 if match.group("pre_under") else 0
    elif match.group("pre_min") or match.group("pre_over"):
        upper = False
        n += 1 if match.group("pre_over") else 0
    else:
        return None  # "write 3 sentences" states no bound
    if clause.negated(match.start()):  # "never more than 50 words" is at most 50
        upper, n = (False, n + 1) if upper else (True, n - 1)
    if upper:
        return _instruction(at_most, n=n)
    return _instruction(at_least, n=n) if at_least else None


def _word_count(clause: _Clause) -> Instruction | None:
    return _count_rule(clause, _WORDS, "max_words", "min_words")


def _sentence_count(clause: _Clause) -> Instruction | None:
    return _count_rule(clause, _SENTENCES, "max_sentences", None)


_EMOJI = re.compile(r"\b(?:emojis?|emoticons?|smileys?)\b")
_EMOJI_FREE = re.compile(r"\bemoji[- ]free\b")
_USE = re.compile(r"\b(?:use|uses|using|include|including|add|adding|sprinkle|put|with|lots of|plenty of)\b")
_EMOJI_COUNT = re.compile(rf"\b(?:at least\s+)?({_NUMBER})\s+(?:\w+\s+)?(?:emojis?|emoticons?|smileys?)\b")


def _emoji(clause: _Clause) -> Instruction | None:
    if _EMOJI_FREE.search(clause.lower):
        return _instruction("no_emoji")
    match = _EMOJI.search(clause.lower)
    if match is None:
        return None
    if clause.negated(match.start()):
        return _instruction("no_emoji")
    if not _USE.search(clause.lower[: match.start()]):
        return None  # "loves emoji" describes, it does not instruct
    count = _EMOJI_COUNT.search(clause.lower)
    return _instruction("use_emoji", n=_number(count.group(1)) if count else 1)


_QUESTION = re.compile(r"\bquestions?\b")
_ENDING = re.compile(r"\b(?:end|ends|ending|finish|finishing|close|closing|conclude|concluding|wrap(?:ping)? up)\b")
_AT_THE_END = re.compile(r"\bat the end\b|\bto (?:close|finish)\b|\blast sentence\b")
_ASK = re.compile(r"\bask(?:s|ing)?\b")
_ASK_QUESTIONS = re.compile(r"\bask(?:s|ing)?\s+(?:the\s+user\s+|them\s+|people\s+)?(?:any\s+|a\s+)?questions?\b")


def _question(clause: _Clause) -> Instruction | None:
    match = _QUESTION.search(clause.lower)
    if match is None:
        return None
    before, after = clause.lower[: match.start()], clause.lower[match.end():]
    negated = clause.negated(match.start())
    if _ENDING.search(before) or (_ASK.search(before) and _AT_THE_END.search(after)):
        return _instruction("never_end_with_question" if negated else "end_with_question")
    if negated and _ASK_QUESTIONS.search(clause.lower):  # a reply with no question cannot end with one
        return _instruction("never_end_with_question")
    return None


_LISTS = re.compile(r"\b(?:bullet(?:ed)?(?:[- ]points?)?|bullets|numbered lists?|lists?|listicles?)\b")


def _lists(clause: _Clause) -> Instruction | None:
    match = _LISTS.search(clause.lower)
    return _instruction("no_lists") if match and clause.negated(match.start()) else None


_CATCHPHRASE = re.compile(r"\bcatch[- ]?phrase\b")
_CATCHPHRASE_DECLARED = re.compile(rf"\bcatch[- ]?phrase(?:\s+is)?\s*:?\s*({_QUOTE})", re.IGNORECASE)


def _catchphrase(declared: str | None) -> Callable[[_Clause], Instruction | None]:
    def match(clause: _Clause) -> Instruction | None:
        found = _CATCHPHRASE.search(clause.lower)
        if found is None or clause.negated(found.start()):
            return None
        before_or_after = clause.lower[: found.start()] + " " + clause.lower[found.end():]
        if not re.search(r"\b(?:work|use|say|include|drop|repeat|end|every|each|always)\b", before_or_after):
            return None  # a declaration ("Your catchphrase: ...") is not yet a rule
        quoted = clause.quoted()
        phrase = quoted[0] if quoted else declared
        return _instruction("use_catchphrase", phrase=phrase) if phrase else None

    return match


_MENTION_VERBS = r"mention|bring up|talk about|recommend|suggest|tell (?:them|the user) about|say"
_TOPIC = (r"(?:whenever|when|if|each time|every time)\s+"
          r"(?:(?:the\s+)?(?:user|users|someone|anyone|they|people|somebody)"
          r"\s+(?:brings?\s+up|mentions?|asks?\s+about|talks?\s+about|says|writes?\s+about|is\s+talking\s+about)"
          r"|(?:you\s+are\s+|you're\s+)?asked\s+about)")
_WHEN_THEN = re.compile(rf"\b{_TOPIC}\s+(?P<triggers>.+?),\s*(?:then\s+)?(?:always\s+)?(?:{_MENTION_VERBS})"
                        r"\s+(?P<mention>.+)$", re.IGNORECASE)
_THEN_WHEN = re.compile(rf"\b(?:always\s+)?(?:{_MENTION_VERBS})\s+(?P<mention>.+?),?\s+{_TOPIC}\s+(?P<triggers>.+)$",
                        re.IGNORECASE)
_ALTERNATIVES = re.compile(r"\s*,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+")


_LEADING_FILLER = re.compile(r"^(?:the topic of|the subject of|topics like|the|a|an)\s+", re.IGNORECASE)


def _alternatives(clause: _Clause, fragment: str) -> list[str]:
    """"pizza, pasta or "the Louvre"" -> ["pizza", "pasta", "the Louvre"]: a quoted item is taken
    as written, an unquoted one without a leading article ("the empire" matches "empire")."""
    items = []
    for item in _ALTERNATIVES.split(fragment.strip()):
        item = item.strip(" \"'“”")
        if item and not _PLACEHOLDER.fullmatch(item):
            item = _LEADING_FILLER.sub("", item)
        items.append(clause.restore(item).strip())
    return [item for item in items if item]


def _mention_when_asked(clause: _Clause) -> Instruction | None:
    # Matched on the original case: a trigger such as "Earth" or "Rome" keeps its capital.
    match = _WHEN_THEN.search(clause.text) or _THEN_WHEN.search(clause.text)
    if match is None or clause.negated(match.start()):
        return None
    return _instruction("mention_when_asked", triggers=_alternatives(clause, match.group("triggers")),
                        mention=_alternatives(clause, match.group("mention")))


_FIRST_PERSON_WORDS = {"i", "me", "my", "mine", "myself"}
_ABOUT_YOURSELF = re.compile(r"\b(?:talk|speak|write|chat)(?:s|ing)?\s+about\s+(?:yourself|your\s+self)\b"
                             r"|\brefer(?:ring)?\s+to\s+yourself\b|\bfirst[- ]person\b")


def _no_first_person(clause: _Clause) -> Instruction | None:
    match = _ABOUT_YOURSELF.search(clause.lower)
    if match and clause.negated(match.start()):
        return _instruction("no_first_person")
    quoted = [phrase.lower() for phrase in clause.quoted()]
    use = re.search(r"\b(?:use|say|write)\b", clause.lower)
    if quoted and set(quoted) <= _FIRST_PERSON_WORDS and use and clause.negated(use.start()):
        return _instruction("no_first_person")
    return None


_SAY = re.compile(r"\b(?:say|says|use|utter|write|mention|type|include)\b")
_WORD_NOUN = re.compile(r"\b(?:words?|phrases?|terms?|expressions?)\b")
_UNQUOTED_WORD = re.compile(r"\bthe (?:word|term) ([a-z][\w'-]*)")


def _forbidden_words(clause: _Clause) -> Instruction | None:
    verb = _SAY.search(clause.lower)
    if verb is None or not clause.negated(verb.start()):
        return None
    quoted = clause.quoted()
    if quoted and (_WORD_NOUN.search(clause.lower) or verb.group() != "use"):
        return _instruction("forbidden_words", words=quoted)
    unquoted = _UNQUOTED_WORD.search(clause.lower)
    return _instruction("forbidden_words", words=[unquoted.group(1)]) if unquoted and not quoted else None


_INCLUDE = re.compile(rf"\b(?:use|say|include|mention|work in|add|put)\s+(?:the\s+(?:word|phrase|term)\s+)?({_QUOTE})")
_EVERY = re.compile(r"\b(?:every|each|all)\b|\balways\b")
_MUST_CONTAIN = re.compile(rf"\b(?:must|should|has to|have to)\s+(?:contain|include|mention|use|say)\s+"
                           rf"(?:the\s+(?:word|phrase|term)\s+)?({_QUOTE})")
_UNQUOTED_INCLUDE = re.compile(r"\buse the (?:word|term) ([a-z][\w'-]*)\b.*\b(?:every|each|all)\b")


def _must_include_word(clause: _Clause) -> Instruction | None:
    match = _INCLUDE.search(clause.lower)
    if match and not clause.negated(match.start()) and _EVERY.search(clause.lower):
        return _instruction("must_include_word", word=clause.restore(match.group(1)))
    match = _MUST_CONTAIN.search(clause.lower)
    if match and not clause.negated(match.start()):
        return _instruction("must_include_word", word=clause.restore(match.group(1)))
    match = _UNQUOTED_INCLUDE.search(clause.lower)
    if match and not clause.negated(match.start()):
        return _instruction("must_include_word", word=match.group(1))
    return None


_START = re.compile(rf"\b(?:begin|start|open|preface|lead)(?:s|ning|ing)?\b.*?\bwith\s+({_QUOTE})")


def _start_with(clause: _Clause) -> Instruction | None:
    match = _START.search(clause.lower)
    if match is None or clause.negated(match.start()):
        return None
    return _instruction("start_with", prefix=clause.restore(match.group(1)))


_URLS = re.compile(r"\b(?:links?|urls?|web\s*addresses|web\s*address|websites?|web\s*sites?|hyperlinks?)\b")


def _no_urls(clause: _Clause) -> Instruction | None:
    match = _URLS.search(clause.lower)
    return _instruction("no_urls") if match and clause.negated(match.start()) else None


_DISCLOSE = re.compile(r"\b(?:say|says|mention|reveal|admit|claim|disclose|tell|acknowledge|imply|state|suggest"
                       r"|confirm|let on|pretend|describe yourself|refer to yourself|call yourself)\b")
_MACHINE = re.compile(r"\b(?:ai|a\.i|artificial intelligence|bot|chatbot|chat bot|robot|language model|llm"
                      r"|assistant|computer program|not (?:a )?(?:real )?(?:human|person))\b")
_BREAK_CHARACTER = re.compile(r"\bbreak(?:s|ing)?\s+character\b")


def _no_ai_disclaimer(clause: _Clause) -> Instruction | None:
    breaking = _BREAK_CHARACTER.search(clause.lower)
    if breaking and clause.negated(breaking.start()):
        return _instruction("no_ai_disclaimer")
    verb = _DISCLOSE.search(clause.lower)
    if verb and clause.negated(verb.start()) and _MACHINE.search(clause.lower, verb.end()):
        return _instruction("no_ai_disclaimer")
    return None


_LOWERCASE = re.compile(r"\blower[- ]?case\b")
_CAPITALS = re.compile(r"\b(?:capital(?:s| letters?)?|capitali[sz](?:e|ed|ation|ing))\b")


def _lowercase_only(clause: _Clause) -> Instruction | None:
    lower = _LOWERCASE.search(clause.lower)
    if lower and not clause.negated(lower.start()):
        return _instruction("lowercase_only")
    capitals = _CAPITALS.search(clause.lower)
    return _instruction("lowercase_only") if capitals and clause.negated(capitals.start()) else None


_SHOUTING = re.compile(r"\b(?:shout\w*|yell\w*|scream\w*|all[- ]?caps|caps[- ]?lock|upper[- ]?case)\b")


def _no_shouting(clause: _Clause) -> Instruction | None:
    match = _SHOUTING.search(clause.lower)
    return _instruction("no_uppercase_shouting") if match and clause.negated(match.start()) else None


_FORMAL = re.compile(r"\bformal(?:ly)?\b")
_CONTRACTIONS = re.compile(r"\bcontractions?\b")
_CASUAL = re.compile(r"\b(?:casual(?:ly)?|informal(?:ly)?)\b")
_CASUAL_VERB = re.compile(r"\b(?:keep|be|speak|talk|write|sound|stay|tone|register|style|reply|answer)\b")
_USE_CASUAL = re.compile(r"\buse\s+(?:\w+\s+)?(?:contractions|slang)\b")


def _register(clause: _Clause) -> Instruction | None:
    formal = _FORMAL.search(clause.lower)
    if formal and not clause.negated(formal.start()):
        return _instruction("formal_register")
    contractions = _CONTRACTIONS.search(clause.lower)
    if contractions and clause.negated(contractions.start()):
        return _instruction("formal_register")
    casual = _CASUAL.search(clause.lower)
    if casual and not clause.negated(casual.start()) and _CASUAL_VERB.search(clause.lower[: casual.start()]):
        return _instruction("casual_register")
    use = _USE_CASUAL.search(clause.lower)
    if use and not clause.negated(use.start()):
        return _instruction("casual_register")
    return None


_ONE_PARAGRAPH = re.compile(r"\b(?:one|a single|single)\s+paragraph\b")
_BREAKS = re.compile(r"\b(?:blank lines?|empty lines?|multiple paragraphs|several paragraphs|paragraph breaks?)\b")


def _one_paragraph(clause: _Clause) -> Instruction | None:
    one = _ONE_PARAGRAPH.search(clause.lower)
    if one and not clause.negated(one.start()):
        return _instruction("one_paragraph")
    breaks = _BREAKS.search(clause.lower)
    return _instruction("one_paragraph") if breaks and clause.negated(breaks.start()) else None


_ADDRESS = re.compile(r"\baddress(?:es|ing)?\s+(?:the\s+)?(?:user|reader|them|people|everyone)\b.*?\b(?:directly|as)\b"
                      r"|\b(?:speak|talk)\s+(?:directly\s+)?to\s+(?:the\s+)?user\s+as\b"
                      r"|\b(?:speak|talk)\s+directly\s+to\b|\bsecond[- ]person\b")


def _second_person(clause: _Clause) -> Instruction | None:
    match = _ADDRESS.search(clause.lower)
    return _instruction("second_person") if match and not clause.negated(match.start()) else None


def _instruction(type_name: str, **params: Any) -> Instruction | None:
    """The instruction, or None when the parsed parameters do not make a valid one (e.g. 0 words)."""
    try:
        return Instruction(type_name, params)
    except InstructionError:
        return None


# --------------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------------

_CONTRADICTIONS = {
    "end_with_question": "never_end_with_question", "never_end_with_question": "end_with_question",
    "formal_register": "casual_register", "casual_register": "formal_register",
    "no_emoji": "use_emoji", "use_emoji": "no_emoji",
}


def _matchers(declared_catchphrase: str | None) -> list[tuple[Callable[[_Clause], Instruction | None], bool]]:
    """(matcher, claims the clause): a claiming match stops the clause from being read again, so
    that e.g. the quoted trigger of a mention rule is not also taken for a word to include."""
    return [
        (_mention_when_asked, True), (_catchphrase(declared_catchphrase), True), (_start_with, True),
        (_no_first_person, True), (_no_ai_disclaimer, False), (_forbidden_words, False), (_must_include_word, False),
        (_question, False), (_emoji, False), (_lists, False), (_word_count, False), (_sentence_count, False),
        (_no_urls, False), (_lowercase_only, False), (_no_shouting, False), (_register, False),
        (_one_paragraph, False), (_second_person, False),
    ]


@lru_cache(maxsize=4096)
def parse_rules(system_message: str) -> tuple[Instruction, ...]:
    """The creator rules a system message states in plain English, as instructions (first statement
    of a type wins; unrecognised text is ignored). See the module docstring for the phrasings."""
    text = system_message.replace("’", "'").replace("‘", "'")
    masked, quotes = _mask_quotes(text)
    declared = _CATCHPHRASE_DECLARED.search(masked)
    declared_catchphrase = quotes[int(_PLACEHOLDER.search(declared.group(1)).group(1))] if declared else None
    rules: dict[str, Instruction] = {}
    matchers = _matchers(declared_catchphrase)
    for clause in _clauses(masked, quotes):
        for matcher, claims in matchers:
            instruction = matcher(clause)
            if instruction is None:
                continue
            if instruction.type not in rules and _CONTRADICTIONS.get(instruction.type) not in rules:
                rules[instruction.type] = instruction
            if claims:
                break
    return tuple(rules.values())
