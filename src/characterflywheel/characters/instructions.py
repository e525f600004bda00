"""Character creators' instructions, and deterministic checks of whether a reply followed them.

A character card carries a few *instructions* ("Keep every reply to 40 words or fewer.", "Never use
emoji."). Each instruction has a ``type`` from the catalogue below and typed ``params``. Every type
has a checker, in the style of IFEval: a small pure function of the reply (and, for conditional
rules, the user's message) that a program can decide without a model.

A checker answers ``True`` (followed), ``False`` (violated) or ``None`` (not applicable this turn,
e.g. ``mention_when_asked`` when the user did not bring up the trigger topic).

Aggregate definitions (``evaluate_replies``), following the paper's two steerability numbers:

* **instruction-following rate** = among replies with at least one applicable instruction, the
  share where *every* applicable instruction was followed (a reply-level, all-or-nothing score).
* **violation rate** = among all (reply, applicable instruction) checks, the share that failed
  (the fraction of instruction instances violated).

So one reply that breaks one of its three rules lowers the following rate by a whole reply but the
violation rate by one check in three. With no applicable replies (or checks) a rate is reported as
0.0; ``applicable`` / ``checks`` being 0 tells that case apart.

Text conventions every checker shares (decisions, documented so results are reproducible):

* **Words** are runs of letters/digits, with internal apostrophes or hyphens kept inside one word:
  "don't" and "well-known" are one word each; emoji and punctuation are not words.
* **Sentences** end at ``.``, ``!``, ``?`` or ``…`` followed by whitespace or the end, and at line
  breaks; a period after a common abbreviation (Mr., Dr., e.g., ...) does not end one, and a piece
  with no word in it (a trailing emoji) is not a sentence.
* **Emoji** are counted per grapheme cluster, so a ZWJ family, a skin-toned thumbs-up, a flag or a
  keycap is one emoji. A cluster is an emoji when it holds an ``Emoji_Presentation`` character
  (this includes regional-indicator flags), an ``Extended_Pictographic`` character followed by the
  emoji selector U+FE0F, a keycap (U+20E3), or a text-default pictograph from the Misc Symbols /
  Dingbats blocks (U+2600-U+27BF, e.g. bare ❤ or ☺) or from U+1F000 upward. Text-default symbols
  elsewhere (© ® ™ ‼ arrows ▶) and ASCII emoticons such as ``:)`` are *not* emoji: they are ordinary
  typography, and a "no emoji" rule should not fail on a copyright sign.
* **Lists** are lines starting with a bullet (``-``, ``*``, ``+``, ``•``, ``‣``, ``◦``, ``▪``,
  ``▸``) or a 1-2 digit number like ``1.`` / ``2)`` / ``(3)``, then whitespace. A roleplay action
  ``*grins*`` is not a bullet (no space after the star); emoji used as bullets are not detected.
* **Ends with a question**: after dropping trailing whitespace, emoji, closing quotes/brackets and
  a trailing roleplay action (``*winks*``), the text ends in ``?`` (``?!`` and ``!?`` count).
* Phrase matching (catchphrase, required / forbidden words, mentions, triggers) is
  case-insensitive, ignores punctuation between words, treats ’ as ', and only matches whole
  words: a forbidden "ass" does not fire on "class". Triggers also match a simple plural (+s/+es).

Every type's own rule is in its ``summary`` (``INSTRUCTION_TYPES[name].summary``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal

import regex

CheckResult = bool | None

# --------------------------------------------------------------------------------------------------
# Text primitives (exported: monitors and reward heuristics reuse them)
# --------------------------------------------------------------------------------------------------

_WORD = regex.compile(r"[\p{L}\p{N}]+(?:['’\-][\p{L}\p{N}]+)*")
_GRAPHEME = regex.compile(r"\X")
_EMOJI_PRESENTATION = regex.compile(r"\p{Emoji_Presentation}")
_EXTENDED_PICTOGRAPHIC = regex.compile(r"\p{Extended_Pictographic}")
_EMOJI_SELECTOR = "\ufe0f"
_KEYCAP = "\u20e3"
_LIST_LINE = regex.compile(r"^[ \t]*(?:[-*+•‣◦▪▸]|\d{1,2}[.)]|\(\d{1,2}\))[ \t]+\S", regex.MULTILINE)
_SENTENCE_END = regex.compile(r"[.!?…]+[\"'”’)\]*_]*(?=\s|$)")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "approx", "capt", "lt", "no"}
)
_TRAILING_ACTION = regex.compile(r"\*[^*\n]+\*$")
_TRAILING_CLOSERS = "\"'”’)]}*_~"
_BLANK_LINE = regex.compile(r"\n[ \t]*\n")


def word_count(text: str) -> int:
    """Number of words (see the module docstring for what a word is)."""
    return sum(1 for _ in _WORD.finditer(text))


def _is_pictograph_block(char: str) -> bool:
    code = ord(char)
    return 0x2600 <= code <= 0x27BF or code >= 0x1F000


def is_emoji_cluster(cluster: str) -> bool:
    if _KEYCAP in cluster or _EMOJI_PRESENTATION.search(cluster):
        return True
    if not _EXTENDED_PICTOGRAPHIC.search(cluster):
        return False
    if _EMOJI_SELECTOR in cluster:
        return True
    return any(_EXTENDED_PICTOGRAPHIC.match(char) and _is_pictograph_block(char) for char in cluster)


def grapheme_clusters(text: str) -> list[str]:
    """The user-perceived characters of ``text`` (a ZWJ family, a flag, a keycap: one each)."""
    return _GRAPHEME.findall(text)


def count_emoji(text: str) -> int:
    """Number of emoji, one per grapheme cluster (a ZWJ family or a flag counts once)."""
    if text.isascii():  # fast path: ASCII holds no emoji (":)" is deliberately not one)
        return 0
    return sum(1 for cluster in _GRAPHEME.findall(text) if is_emoji_cluster(cluster))


def has_list(text: str) -> bool:
    """True when any line is a bullet or numbered list item."""
    return _LIST_LINE.search(text) is not None


def _strip_trailing_decoration(text: str) -> str:
    """Drop what may follow a final question mark without changing the sentence's mood."""
    while True:
        text = text.rstrip()
        if not text:
            return text
        action = _TRAILING_ACTION.search(text)
        if action:
            text = text[: action.start()]
            continue
        if text[-1] in _TRAILING_CLOSERS:
            text = text[:-1]
            continue
        if not text[-1].isascii():
            # Forward segmentation: the regex module's reverse \X splits ZWJ sequences apart.
            last = _GRAPHEME.findall(text)[-1]
            if is_emoji_cluster(last):
                text = text[: -len(last)]
                continue
        return text


def ends_with_question(text: str) -> bool:
    """True when the reply's last sentence is a question (trailing emoji/actions ignored)."""
    return _strip_trailing_decoration(text).rstrip("!").endswith(("?", "？", "‽"))


def _sentences_in_line(line: str) -> int:
    pieces: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(line):
        words_before = _WORD.findall(line[start : end.start()])
        # "Dr. Watson" must not count as two sentences.
        if end.group().startswith(".") and words_before and words_before[-1].lower() in _ABBREVIATIONS:
            continue
        pieces.append(line[start : end.end()])
        start = end.end()
    pieces.append(line[start:])
    return sum(1 for piece in pieces if _WORD.search(piece))


def sentence_count(text: str) -> int:
    """Number of sentences (see the module docstring for the splitting rule)."""
    return sum(_sentences_in_line(line) for line in text.splitlines())


def _normalize_apostrophes(text: str) -> str:
    return text.replace("’", "'").replace("‘", "'")


@lru_cache(maxsize=1024)
def _phrase_pattern(phrase: str, allow_plural: bool) -> regex.Pattern[str]:
    words = _WORD.findall(_normalize_apostrophes(phrase))
    if not words:
        raise ValueError(f"phrase {phrase!r} has no words in it")
    body = r"[^\p{L}\p{N}]+".join(regex.escape(word) for word in words)
    plural = "(?:s|es)?" if allow_plural else ""
    return regex.compile(rf"(?<![\p{{L}}\p{{N}}]){body}{plural}(?![\p{{L}}\p{{N}}])", regex.IGNORECASE)


def contains_phrase(text: str, phrase: str, *, allow_plural: bool = False) -> bool:
    """Whole-word, case-insensitive phrase match that ignores punctuation between the words."""
    return _phrase_pattern(phrase, allow_plural).search(_normalize_apostrophes(text)) is not None


# --------------------------------------------------------------------------------------------------
# Checkers: one small function per instruction type
# --------------------------------------------------------------------------------------------------

_SECOND_PERSON = regex.compile(r"\b(?:you|your|yours|yourself|yourselves|y'all|ya|thee|thou|thy|thine)\b", regex.I)
_FIRST_PERSON_SINGULAR = regex.compile(r"\b(?:i|me|my|mine|myself)\b", regex.I)
_CONTRACTION = regex.compile(
    r"\b\p{L}+n't\b"
    r"|\b\p{L}+'(?:re|ve|ll|d|m)\b"
    # "'s" is only a contraction after these words; elsewhere it is a possessive ("the chef's knife").
    r"|\b(?:it|that|there|here|what|who|where|when|how|let|he|she|everyone|everybody|nobody|someone"
    r"|somebody|something|nothing)'s\b"
    r"|(?<![\p{L}\p{N}])'(?:em|cause|til|bout)\b",
    regex.I,
)
SLANG_WORDS: tuple[str, ...] = (
    "gonna", "wanna", "gotta", "kinda", "sorta", "dunno", "lemme", "gimme", "y'all", "lol", "lmao",
    "omg", "btw", "tbh", "idk", "imo", "ngl", "dude", "bro", "yeah", "yep", "yup", "nope", "nah",
    "ya", "cuz", "hey", "haha", "hehe",
)  # fmt: skip
_SLANG = regex.compile(r"\b(?:" + "|".join(regex.escape(word) for word in SLANG_WORDS) + r")\b", regex.I)
_URL = regex.compile(
    r"\b(?:https?|ftp)://\S+|\bwww\.\S+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|ai|gov|edu|co|app|dev|me|tv|gg|ly|uk|us|info|biz)\b",
    regex.I,
)
_AI_DISCLAIMER = regex.compile(
    r"\b(?:i am|i'm|im|as)\s+(?:just\s+|only\s+|merely\s+|simply\s+)?an?\s+"
    r"(?:ai|a\.i\.|artificial intelligence|chatbot|chat bot|bot|virtual assistant|language model|computer program)\b"
    r"|\blanguage model\b|\bai (?:model|assistant|system)\b"
    r"|\bi(?: am|'m) not (?:a )?(?:real person|real human|human)\b",
    regex.I,
)


def uses_contraction(text: str) -> bool:
    """True for don't / I'm / we'll / it's / 'em ...; a possessive ("the chef's knife") is not one."""
    return _CONTRACTION.search(_normalize_apostrophes(text)) is not None


def uses_slang(text: str) -> bool:
    """True when a word from SLANG_WORDS appears (whole word, case-insensitive)."""
    return _SLANG.search(_normalize_apostrophes(text)) is not None


def _caps_letters(word: str) -> int:
    """Letters in ``word`` if it is written in ALL CAPS, else 0."""
    letters = [char for char in word if char.isalpha()]
    return len(letters) if letters and all(char.isupper() for char in letters) else 0


def is_shouting(text: str) -> bool:
    """Two or more consecutive ALL-CAPS words (2+ letters each), or one ALL-CAPS word of 5+ letters.

    Short lone capitals ("NASA", "OK", "I") are acronyms, not shouting.
    """
    run = 0
    for word in _WORD.findall(text):
        letters = _caps_letters(word)
        if letters >= 5:
            return True
        run = run + 1 if letters >= 2 else 0
        if run >= 2:
            return True
    return False


def _check_max_words(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return word_count(reply) <= params["n"]


def _check_min_words(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return word_count(reply) >= params["n"]


def _check_max_sentences(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return sentence_count(reply) <= params["n"]


def _check_end_with_question(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return ends_with_question(reply)


def _check_never_end_with_question(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return not ends_with_question(reply)


def _check_no_emoji(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return count_emoji(reply) == 0


def _check_use_emoji(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return count_emoji(reply) >= params["n"]


def _check_no_lists(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return not has_list(reply)


def _check_use_catchphrase(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return contains_phrase(reply, params["phrase"])


def _check_second_person(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return _SECOND_PERSON.search(_normalize_apostrophes(reply)) is not None


def _check_no_first_person(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return _FIRST_PERSON_SINGULAR.search(reply) is None


def _check_mention_when_asked(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    if user_message is None:
        return None
    if not any(contains_phrase(user_message, trigger, allow_plural=True) for trigger in params["triggers"]):
        return None
    return any(contains_phrase(reply, mention) for mention in params["mention"])


def _check_one_paragraph(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return _BLANK_LINE.search(reply.strip()) is None


def _check_formal_register(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return not uses_contraction(reply) and not uses_slang(reply)


def _check_casual_register(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return uses_contraction(reply) or uses_slang(reply)


def _check_no_uppercase_shouting(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return not is_shouting(reply)


def _check_lowercase_only(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return not any(char.isupper() for char in reply)


def _check_forbidden_words(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return not any(contains_phrase(reply, word) for word in params["words"])


def _check_must_include_word(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return contains_phrase(reply, params["word"])


def _check_no_urls(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return _URL.search(reply) is None


def _check_start_with(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    opening = _normalize_apostrophes(reply.lstrip()).casefold()
    return opening.startswith(_normalize_apostrophes(params["prefix"]).casefold())


def _check_no_ai_disclaimer(reply: str, params: Mapping[str, Any], user_message: str | None) -> CheckResult:
    return _AI_DISCLAIMER.search(_normalize_apostrophes(reply)) is None


# --------------------------------------------------------------------------------------------------
# Human sentences a creator would write
# --------------------------------------------------------------------------------------------------


def _quoted_alternatives(items: Sequence[str], joiner: str = "or") -> str:
    quoted = [f'"{item}"' for item in items]
    if len(quoted) == 1:
        return quoted[0]
    return f"{', '.join(quoted[:-1])} {joiner} {quoted[-1]}"


def _plain_alternatives(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _describe_max_sentences(params: Mapping[str, Any]) -> str:
    if params["n"] == 1:
        return "Answer in a single sentence."
    return f"Use at most {params['n']} sentences per reply."


def _describe_use_emoji(params: Mapping[str, Any]) -> str:
    amount = "one emoji" if params["n"] == 1 else f"{params['n']} emoji"
    return f"Use at least {amount} in every reply."


def _describe_forbidden_words(params: Mapping[str, Any]) -> str:
    noun = "word" if len(params["words"]) == 1 else "words"
    return f"Never say the {noun} {_quoted_alternatives(params['words'])}."


def _describe_mention_when_asked(params: Mapping[str, Any]) -> str:
    triggers = _plain_alternatives(params["triggers"])
    return f"Whenever the user brings up {triggers}, mention {_quoted_alternatives(params['mention'])}."


# --------------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------------

ParamKind = Literal["positive_int", "text", "text_list"]


class InstructionError(ValueError):
    """A bad instruction; ``field`` is the offending key ("type", "params.n", ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: ParamKind
    default: Any = None  # None: the parameter is required
    accepts_single_text: bool = False  # a "text_list" that may be given as one string


@dataclass(frozen=True)
class InstructionType:
    name: str
    summary: str  # the exact rule the checker applies
    params: tuple[ParamSpec, ...]
    describe: Callable[[Mapping[str, Any]], str]
    check: Callable[[str, Mapping[str, Any], str | None], CheckResult]


def _static(sentence: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda params: sentence


_N = ParamSpec("n", "positive_int")
_CATALOGUE: tuple[InstructionType, ...] = (
    InstructionType("max_words", "word_count(reply) <= n", (_N,),
                    lambda p: f"Keep every reply to {p['n']} words or fewer.", _check_max_words),
    InstructionType("min_words", "word_count(reply) >= n", (_N,),
                    lambda p: f"Write at least {p['n']} words in every reply.", _check_min_words),
    InstructionType("max_sentences", "sentence_count(reply) <= n", (_N,),
                    _describe_max_sentences, _check_max_sentences),
    InstructionType("end_with_question", "ends_with_question(reply)", (),
                    _static("End every reply with a question for the user."), _check_end_with_question),
    InstructionType("never_end_with_question", "not ends_with_question(reply)", (),
                    _static("Never end a reply with a question."), _check_never_end_with_question),
    InstructionType("no_emoji", "count_emoji(reply) == 0", (),
                    _static("Never use emoji."), _check_no_emoji),
    InstructionType("use_emoji", "count_emoji(reply) >= n (n defaults to 1)", (ParamSpec("n", "positive_int", 1),),
                    _describe_use_emoji, _check_use_emoji),
    InstructionType("no_lists", "no line is a bullet or numbered item (has_list)", (),
                    _static("Never use bullet points or numbered lists; write in plain sentences."),
                    _check_no_lists),
    InstructionType("use_catchphrase", "the phrase appears (whole words, case-insensitive)",
                    (ParamSpec("phrase", "text"),),
                    lambda p: f'Work your catchphrase "{p["phrase"]}" into every reply.', _check_use_catchphrase),
    InstructionType("second_person",
                    "the reply addresses the user: it contains you/your/yours/yourself/y'all/ya/thee/thou/thy",
                    (), _static('Address the user directly as "you" in every reply.'), _check_second_person),
    InstructionType("no_first_person",
                    "no first-person singular word: I, me, my, mine, myself (we/us are allowed)", (),
                    _static('Never talk about yourself: do not use "I", "me", "my", "mine" or "myself".'),
                    _check_no_first_person),
    InstructionType("mention_when_asked",
                    "applicable only when the user's message contains a trigger (or its plural); "
                    "then one of the mention alternatives must appear in the reply",
                    (ParamSpec("triggers", "text_list", accepts_single_text=True),
                     ParamSpec("mention", "text_list", accepts_single_text=True)),
                    _describe_mention_when_asked, _check_mention_when_asked),
    InstructionType("one_paragraph", "no blank line inside the (stripped) reply", (),
                    _static("Answer in a single paragraph, with no blank lines."), _check_one_paragraph),
    InstructionType("formal_register", "no contraction (don't, I'm, it's, 'em ...) and no word from SLANG_WORDS",
                    (), _static("Speak formally: no contractions and no slang."), _check_formal_register),
    InstructionType("casual_register", "at least one contraction or one word from SLANG_WORDS", (),
                    _static("Keep it casual, like texting a friend: use contractions or slang."),
                    _check_casual_register),
    InstructionType("no_uppercase_shouting",
                    "not is_shouting(reply): no run of 2+ ALL-CAPS words, no ALL-CAPS word of 5+ letters", (),
                    _static("Never shout in ALL CAPS."), _check_no_uppercase_shouting),
    InstructionType("lowercase_only", "no uppercase letter anywhere", (),
                    _static("Write everything in lowercase letters only."), _check_lowercase_only),
    InstructionType("forbidden_words", "none of the words/phrases appears (whole words, case-insensitive)",
                    (ParamSpec("words", "text_list", accepts_single_text=True),),
                    _describe_forbidden_words, _check_forbidden_words),
    InstructionType("must_include_word", "the word/phrase appears (whole words, case-insensitive)",
                    (ParamSpec("word", "text"),),
                    lambda p: f'Use the word "{p["word"]}" in every reply.', _check_must_include_word),
    InstructionType("no_urls", "no http(s)/ftp link, www. address, bare domain (example.com) or e-mail domain",
                    (), _static("Never share links, URLs or web addresses."), _check_no_urls),
    InstructionType("start_with", "the reply, leading whitespace dropped, starts with prefix (case-insensitive)",
                    (ParamSpec("prefix", "text"),),
                    lambda p: f'Begin every reply with "{p["prefix"]}".', _check_start_with),
    InstructionType("no_ai_disclaimer",
                    'no "I am an AI", "as a language model", "AI assistant", "I\'m not human" and the like', (),
                    _static("Stay in character: never say that you are an AI, a bot or a language model."),
                    _check_no_ai_disclaimer),
)  # fmt: skip

INSTRUCTION_TYPES: Mapping[str, InstructionType] = MappingProxyType({spec.name: spec for spec in _CATALOGUE})


def _instruction_type(name: object) -> InstructionType:
    if not isinstance(name, str) or name not in INSTRUCTION_TYPES:
        known = ", ".join(INSTRUCTION_TYPES)
        raise InstructionError("type", f"unknown instruction type {name!r} (known: {known})")
    return INSTRUCTION_TYPES[name]


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(_WORD.search(value))


def _normalize_param(spec: ParamSpec, value: object) -> Any:
    where = f"params.{spec.name}"
    if spec.kind == "positive_int":
        # bool is an int subclass; `true` in JSON is never a count.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InstructionError(where, f"must be a positive integer (got {value!r})")
        return value
    if spec.kind == "text":
        if not _is_text(value):
            raise InstructionError(where, f"must be a non-empty text with at least one word (got {value!r})")
        return value
    if spec.accepts_single_text and isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(_is_text(item) for item in value):
        raise InstructionError(where, f"must be a non-empty list of texts (got {value!r})")
    return tuple(value)  # a tuple, so a shared Instruction cannot be changed in place


def normalize_params(type_name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``params`` for ``type_name`` and fill defaults; raise InstructionError naming the key."""
    spec = _instruction_type(type_name)
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise InstructionError("params", f"must be an object (got {params!r})")
    expected = {param.name for param in spec.params}
    for key in params:
        if key not in expected:
            allowed = ", ".join(sorted(expected)) or "none"
            raise InstructionError(f"params.{key}", f"unknown parameter for {type_name} (allowed: {allowed})")
    normalized: dict[str, Any] = {}
    for param in spec.params:
        if param.name in params:
            normalized[param.name] = _normalize_param(param, params[param.name])
        elif param.default is not None:
            normalized[param.name] = param.default
        else:
            raise InstructionError(f"params.{param.name}", f"missing (required by {type_name})")
    return normalized


@dataclass(frozen=True)
class Instruction:
    """One creator instruction: a catalogue ``type`` plus validated ``params``.

    Construction validates, so an unknown type or a bad parameter fails where the card is loaded.
    ``params`` is excluded from the hash (dicts are unhashable) but not from equality.
    """

    type: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # A plain dict (not a read-only proxy) so instructions pickle and deepcopy.
        object.__setattr__(self, "params", normalize_params(self.type, self.params))

    def describe(self) -> str:
        """The sentence a creator would write, e.g. "Keep every reply to 40 words or fewer."."""
        return INSTRUCTION_TYPES[self.type].describe(self.params)

    def check(self, reply: str, user_message: str | None = None) -> CheckResult:
        """True followed, False violated, None not applicable to this turn."""
        return INSTRUCTION_TYPES[self.type].check(reply, self.params, user_message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``Instruction.from_dict`` reads it back."""
        params = {key: list(value) if isinstance(value, tuple) else value for key, value in self.params.items()}
        return {"type": self.type, "params": params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instruction:
        if not isinstance(data, Mapping):
            raise InstructionError("instruction", f"must be an object with type and params (got {data!r})")
        unknown = set(data) - {"type", "params"}
        if unknown:
            raise InstructionError(sorted(unknown)[0], "unknown key (an instruction has only type and params)")
        if "type" not in data:
            raise InstructionError("type", "missing")
        return cls(data["type"], data.get("params") or {})


# --------------------------------------------------------------------------------------------------
# Per-reply results and aggregates
# --------------------------------------------------------------------------------------------------


def _combine(previous: CheckResult, current: CheckResult) -> CheckResult:
    if previous is None:
        return current
    if current is None:
        return previous
    return previous and current


def check_reply(
    reply: str, instructions: Sequence[Instruction], user_message: str | None = None
) -> dict[str, CheckResult]:
    """Result per instruction type. Two instructions of one type are merged: False if either failed."""
    results: dict[str, CheckResult] = {}
    for instruction in instructions:
        result = instruction.check(reply, user_message)
        results[instruction.type] = _combine(results.get(instruction.type), result)
    return results


def follows_all(results: Mapping[str, CheckResult]) -> bool | None:
    """True when every applicable instruction was followed; None when none applied."""
    applicable = [result for result in results.values() if result is not None]
    return all(applicable) if applicable else None


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass
class InstructionReport:
    """Aggregate steerability numbers (definitions in the module docstring).

    Reply level: ``replies`` scored, ``applicable`` of them with at least one applicable instruction,
    ``followed`` (all applicable followed) and ``violated`` (at least one failed); followed + violated
    == applicable. Check level: ``checks`` applicable (reply, instruction) pairs, ``failed_checks``.
    ``per_type[type]`` holds checks, followed, violated, not_applicable, following_rate, violation_rate.
    """

    replies: int
    applicable: int
    followed: int
    violated: int
    following_rate: float
    violation_rate: float
    per_type: dict[str, dict[str, float]]
    checks: int = 0
    failed_checks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _empty_type_tally() -> dict[str, float]:
    return {"checks": 0, "followed": 0, "violated": 0, "not_applicable": 0}


def evaluate_replies(items: Iterable[tuple[str, Sequence[Instruction], str | None]]) -> InstructionReport:
    """Score (reply, instructions, user_message) triples; each instruction instance is one check."""
    replies = applicable = followed = checks = failed_checks = 0
    per_type: dict[str, dict[str, float]] = {}
    for reply, instructions, user_message in items:
        replies += 1
        reply_checks = reply_failures = 0
        for instruction in instructions:
            tally = per_type.setdefault(instruction.type, _empty_type_tally())
            result = instruction.check(reply, user_message)
            if result is None:
                tally["not_applicable"] += 1
                continue
            tally["checks"] += 1
            tally["followed" if result else "violated"] += 1
            reply_checks += 1
            reply_failures += 0 if result else 1
        checks += reply_checks
        failed_checks += reply_failures
        if reply_checks:
            applicable += 1
            followed += 1 if reply_failures == 0 else 0
    for tally in per_type.values():
        tally["following_rate"] = _rate(int(tally["followed"]), int(tally["checks"]))
        tally["violation_rate"] = _rate(int(tally["violated"]), int(tally["checks"]))
    return InstructionReport(
        replies=replies,
        applicable=applicable,
        followed=followed,
        violated=applicable - followed,
        following_rate=_rate(followed, applicable),
        violation_rate=_rate(failed_checks, checks),
        per_type=per_type,
        checks=checks,
        failed_checks=failed_checks,
    )


__all__ = [
    "INSTRUCTION_TYPES",
    "SLANG_WORDS",
    "CheckResult",
    "Instruction",
    "InstructionError",
    "InstructionReport",
    "InstructionType",
    "ParamSpec",
    "check_reply",
    "contains_phrase",
    "count_emoji",
    "grapheme_clusters",
    "ends_with_question",
    "evaluate_replies",
    "follows_all",
    "has_list",
    "is_shouting",
    "normalize_params",
    "sentence_count",
    "uses_contraction",
    "uses_slang",
    "word_count",
]
