"""PII detection and masking for chat text (Phase I, privacy half).

``find_pii(text, region)`` returns typed spans; ``mask_pii(text, region)`` replaces each with a
typed placeholder (``[EMAIL]``, ``[PHONE]``, ``[ADDRESS]``, ``[CARD]``, ``[IBAN]``, ``[ACCOUNT]``,
``[SSN]``, ``[URL]``, ``[NAME]``) and keeps every other character as it was.

Library choice (all offline, installable from PyPI):

* Presidio is the maintained reference, but its analyzer needs a spaCy model fetched from the
  internet at set-up, and scrubadub 2.0 needs nltk/textblob corpora downloads for names. Neither
  runs offline here, so we use what those libraries themselves build on:
* ``phonenumbers`` (Google's libphonenumber) finds valid phone numbers in free text in national
  and international formats (``PhoneNumberMatcher``); a context rule (a "call/text/number" word
  before a run of 7-15 digits) catches numbers it cannot validate (fictional 555 numbers, ...);
* ``python-stdnum`` validates card numbers (Luhn), IBANs (ISO 7064 mod 97-10) and US routing
  numbers (ABA checksum), so a digit run is masked as a card only when it is one;
* regular expressions (with those validators) for emails (also "name at host dot com"), URLs,
  street addresses, SSNs, numbers after an "account"-like word, and self-stated names
  ("my name is Jane Doe", "i'm called jane doe", "call me Jane"), like Presidio's pattern
  recognizers with context words.

Assumptions: text is chat (often lower case, little punctuation). Names are only detected when the
speaker states them (a pattern, not NER): third-party names in free text are kept. A URL is masked
when it carries something personal: a query parameter that is not a public one (``v``, ``q``,
``utm_*``, ...), an email, a token-like path segment (8+ letters-and-digits with 2+ of each, or 24+
of them), or a profile path on a social site; ``https://www.youtube.com/watch?v=...`` is kept.
A street needs a clear suffix (street, ave, road, ...) or, for words that are also prose (way,
court, close, hill, ...), a capital letter or an address word before it. Overlapping detections
keep the first found in ``DETECTOR_ORDER`` (the more specific type).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.us import rtn

PII_TYPES = ("EMAIL", "URL", "IBAN", "CARD", "SSN", "ACCOUNT", "PHONE", "ADDRESS", "NAME")


@dataclass(frozen=True)
class PiiSpan:
    start: int
    end: int
    kind: str

    def to_json(self) -> dict[str, int | str]:
        return {"start": self.start, "end": self.end, "type": self.kind}


# --------------------------------------------------------------------------- email

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
_AT = r"\s*(?:\(at\)|\[at\]|\{at\}|<at>|\s+at\s+)\s*"
_DOT = r"(?:\.|\s*(?:\(dot\)|\[dot\]|\{dot\}|<dot>)\s*|\s+dot\s+)"
_TLD = r"(?:com|net|org|edu|gov|io|co|uk|de|fr|es|it|nl|info|me|us|ca|au|in|mail)"
_OBFUSCATED_EMAIL = re.compile(
    rf"(?<![\w.])[A-Za-z0-9][A-Za-z0-9._%+-]*(?:{_DOT}[A-Za-z0-9_%+-]+)*?{_AT}"
    rf"[A-Za-z0-9-]+(?:{_DOT}[A-Za-z0-9-]+)*{_DOT}{_TLD}\b",
    re.IGNORECASE,
)


def _emails(text: str) -> list[PiiSpan]:
    spans = [PiiSpan(m.start(), m.end(), "EMAIL") for m in _EMAIL.finditer(text)]
    spans += [PiiSpan(m.start(), m.end(), "EMAIL") for m in _OBFUSCATED_EMAIL.finditer(text)]
    return spans


# --------------------------------------------------------------------------- url

_URL = re.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.|\b(?=[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|ly|me|co|gl|be|tv|app|link|to)/))"
    r"[^\s<>\"'`]+",
    re.IGNORECASE,
)
_URL_TRAILING = ".,;:!?)]}'\""
_SOCIAL_PROFILE = re.compile(
    r"(?:facebook\.com|fb\.com|instagram\.com|twitter\.com|x\.com|linkedin\.com/in|tiktok\.com|github\.com|"
    r"reddit\.com/u(?:ser)?|venmo\.com|paypal\.me|cash\.app|t\.me|wa\.me|snapchat\.com/add|onlyfans\.com)/[^/\s]+",
    re.IGNORECASE,
)
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9]{8,}")
_PUBLIC_QUERY_KEYS = frozenset(
    {"v", "t", "list", "index", "q", "query", "search", "s", "page", "p", "lang", "hl", "feature", "ref", "start",
     "sort", "tab"}
)


def _is_token(segment: str) -> bool:
    """A random-looking id: 8+ letters and digits with 2+ of each, or 24+ of them."""
    if not _TOKEN_SEGMENT.fullmatch(segment):
        return False
    digits = sum(character.isdigit() for character in segment)
    return len(segment) >= 24 or (digits >= 2 and len(segment) - digits >= 2)


def _is_personal_url(url: str) -> bool:
    if "@" in url or _SOCIAL_PROFILE.search(url):
        return True
    rest = re.sub(r"^[a-z]+://", "", url, flags=re.IGNORECASE)
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    for pair in filter(None, re.split(r"[&;]", query)):
        key = pair.split("=", 1)[0].lower()
        if key not in _PUBLIC_QUERY_KEYS and not key.startswith("utm_"):
            return True
    if fragment and any(_is_token(part) for part in re.split(r"[^A-Za-z0-9]", fragment)):
        return True
    path = rest.split("/", 1)[1] if "/" in rest else ""
    return any(_is_token(segment) for segment in re.split(r"[^A-Za-z0-9]", path))


def _urls(text: str) -> list[PiiSpan]:
    spans = []
    for match in _URL.finditer(text):
        url = match.group().rstrip(_URL_TRAILING)
        if _is_personal_url(url):
            spans.append(PiiSpan(match.start(), match.start() + len(url), "URL"))
    return spans


# --------------------------------------------------------------------------- iban, card, ssn, account

_IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{1,4}){3,9}\b", re.IGNORECASE)


def _ibans(text: str) -> list[PiiSpan]:
    spans = []
    for match in _IBAN_CANDIDATE.finditer(text):
        candidate = match.group()
        # the pattern may run into a following word: take the longest valid prefix at a group border
        cuts = [m.start() for m in re.finditer(r"[ -]", candidate)] + [len(candidate)]
        for cut in sorted(cuts, reverse=True):
            if stdnum_iban.is_valid(candidate[:cut].upper(), check_country=False):
                spans.append(PiiSpan(match.start(), match.start() + cut, "IBAN"))
                break
    return spans


_DIGIT_RUN = re.compile(r"(?<![\d.,])\d(?:[ -]?\d){12,18}(?!\d)")


def _cards(text: str) -> list[PiiSpan]:
    spans = []
    for match in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn.is_valid(digits):
            spans.append(PiiSpan(match.start(), match.end(), "CARD"))
    return spans


_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ]?)(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_SSN_CONTEXT = re.compile(r"\b(?:ssn|social security(?: number| no\.?| #)?|social)\s*(?:is|:|#|number)?\s*$", re.IGNORECASE)


def _ssns(text: str) -> list[PiiSpan]:
    spans = []
    for match in _SSN.finditer(text):
        separated = bool(match.group(1))
        if separated or _SSN_CONTEXT.search(text[max(0, match.start() - 40): match.start()]):
            spans.append(PiiSpan(match.start(), match.end(), "SSN"))
    return spans


_ACCOUNT = re.compile(
    r"\b(?:(?:bank\s+|checking\s+|savings\s+)?(?:account|acct|acc|a/c)|routing|sort\s+code|iban|bsb|member(?:ship)?|"
    r"customer|policy|passport|license|licence|id)"
    r"(?:\s*(?:number|num|no\.?|nr|#|id))?\s*(?:is|was|:|#|=|-)?\s*[:#]?\s*"
    r"(?P<value>[A-Z]{0,3}[\dXx*][\dXx* -]{3,30}[\dXx*])",
    re.IGNORECASE,
)


def _accounts(text: str) -> list[PiiSpan]:
    spans = []
    for match in _ACCOUNT.finditer(text):
        value = match.group("value").rstrip(" -")
        if len(re.sub(r"\D", "", value)) >= 4:
            start = match.start("value")
            spans.append(PiiSpan(start, start + len(value), "ACCOUNT"))
    for match in re.finditer(r"(?<!\d)\d{9}(?!\d)", text):  # US routing numbers validate by checksum
        context = text[max(0, match.start() - 30): match.start()].lower()
        if "routing" in context or ("aba" in context and rtn.is_valid(match.group())):
            spans.append(PiiSpan(match.start(), match.end(), "ACCOUNT"))
    return spans


# --------------------------------------------------------------------------- phone

_PHONE_CONTEXT = re.compile(
    r"\b(?:call|text|txt|phone|number|cell|mobile|tel|telephone|whatsapp|signal|reach me|contact|fax|ph|ring)\b"
    r"[^\n\d+]{0,30}$",
    re.IGNORECASE,
)
_PHONE_LIKE = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().-]{5,18}\d(?!\d)")


def _phones(text: str, region: str) -> list[PiiSpan]:
    spans = [
        PiiSpan(match.start, match.end, "PHONE")
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    ]
    for match in _PHONE_LIKE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 7 <= len(digits) <= 15 and _PHONE_CONTEXT.search(text[max(0, match.start() - 40): match.start()]):
            spans.append(PiiSpan(match.start(), match.end(), "PHONE"))
    return spans


# --------------------------------------------------------------------------- address

_CLEAR_SUFFIXES = (
    "street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|drive|dr|terrace|ter|highway|hwy|parkway|pkwy|"
    "crescent|cres|trl|cir|ct|pl|sq|rte|mews|pike"
)
_AMBIGUOUS_SUFFIXES = "court|way|place|circle|square|trail|close|row|loop|alley|plaza|walk|gardens|grove|hill|heights|route"
_AMBIGUOUS = frozenset(_AMBIGUOUS_SUFFIXES.split("|"))
_UNIT = r"(?:apt|apartment|suite|ste|unit|flat|fl|floor|room|rm|#)\.?\s*#?\s*[a-z0-9-]{1,6}"
_NOT_A_STREET_WORD = (
    r"(?!(?:the|a|an|my|your|his|her|our|their|its|this|that|these|those|to|of|in|on|at|for|and|or|but|"
    r"with|from|by|all|down|up|out|over|more|most|other|same|whole|long|big|little|times?|years?|days?|"
    r"hours?|minutes?|weeks?|months?|miles?|km|dollars?|bucks?|people|kids?|is|are|was|i|im|you)\b)"
)
_ADDRESS = re.compile(
    rf"(?:\b{_UNIT},?\s+)?"
    rf"\b\d{{1,6}}[a-z]?(?:-\d{{1,4}})?\s+"
    rf"(?:(?:n|s|e|w|north|south|east|west)\.?\s+)?"
    rf"(?:{_NOT_A_STREET_WORD}[a-z0-9][a-z0-9'.-]*\s+){{1,4}}?"
    rf"(?P<suffix>{_CLEAR_SUFFIXES}|{_AMBIGUOUS_SUFFIXES})\b\.?"
    rf"(?:\s+(?:n|s|e|w|ne|nw|se|sw)\b\.?)?"
    rf"(?:,?\s*{_UNIT})?"
    rf"(?:,\s*[a-z][a-z.'-]*(?:\s[a-z][a-z.'-]*){{0,2}})?"
    rf"(?:,?\s*[a-z]{{2}}\b)?(?:\s*\d{{5}}(?:-\d{{4}})?)?",
    re.IGNORECASE,
)
_ADDRESS_CONTEXT = re.compile(
    r"\b(?:address|live|living|lives|located|moved?|moving|send|deliver|ship|mail|post|house|home|apartment|flat|"
    r"place|at|on|to)\b[^.!?\n]{0,12}$",
    re.IGNORECASE,
)
_PO_BOX = re.compile(r"\b(?:p\.?\s?o\.?\s?box|post\s+office\s+box)\s*#?\s*\d+", re.IGNORECASE)
_ADDRESS_TAIL_WORDS = re.compile(r"(?:,?\s*\b(?:and|but|so|if|lol|haha|btw|when|then|or)\b.*)$", re.IGNORECASE)


def _addresses(text: str) -> list[PiiSpan]:
    spans = []
    for match in _ADDRESS.finditer(text):
        suffix = match.group("suffix")
        street = text[match.start(): match.end("suffix")]
        if (
            suffix.lower() in _AMBIGUOUS
            and not re.search(r"\b[A-Z][a-z]", street)
            and not _ADDRESS_CONTEXT.search(text[max(0, match.start() - 40): match.start()])
        ):
            continue  # "2 dogs way more": a street only with a capital or an address word before it
        value = match.group()
        head, tail = value[: match.end("suffix") - match.start()], value[match.end("suffix") - match.start():]
        if not re.search(r"\d{5}(?:-\d{4})?$", tail):  # without a ZIP, a city part may have run into prose
            tail = _ADDRESS_TAIL_WORDS.sub("", tail)
        spans.append(PiiSpan(match.start(), match.start() + len((head + tail).rstrip(" ,")), "ADDRESS"))
    spans += [PiiSpan(m.start(), m.end(), "ADDRESS") for m in _PO_BOX.finditer(text)]
    return spans


# --------------------------------------------------------------------------- self-stated names

_END = r"(?![\w'’])\s*[,:]?\s*"
_STRONG_NAME_TRIGGER = re.compile(
    r"\b(?:my\s+(?:full\s+|real\s+|legal\s+|first\s+and\s+last\s+)?name\s*(?:is|'s|’s|=|:)|"
    r"(?:the\s+)?name['’]s|name\s*:|i\s*(?:'m|’m|m|am)\s+called|i'?m\s+named|my\s+names)" + _END,
    re.IGNORECASE,
)
_MEDIUM_NAME_TRIGGER = re.compile(r"\b(?:(?:you\s+can\s+|they\s+|just\s+)?call\s+me|i\s+go\s+by)" + _END, re.IGNORECASE)
_WEAK_NAME_TRIGGER = re.compile(r"\b(?:i\s*(?:'m|’m|am)|this\s+is)" + _END, re.IGNORECASE)
_TITLE = re.compile(r"(?:mr|mrs|ms|miss|dr|prof)\.?\s+", re.IGNORECASE)
_NAME_TOKEN = re.compile(r"[^\W\d_](?:[^\W\d_]|['’-](?=[^\W\d_]))*")
_NOT_NAMES = frozenset(
    """a an the and but or so if then than when where while because as at in on of to for from with by about
    i im i'm me my you your he she we they it its is was be been am are not no yes just really very too also
    maybe later tomorrow today tonight back any anytime away off out up down over into soon actually
    again now here there lol haha hahaha lmao btw okay ok well oh hey hi hello sure what who how why which
    that this these those like love hate want going gonna gotta got get have has had do does did will would
    can could should might must""".split()
)
_CAPITALISED_NOT_NAMES = frozenset(
    """I Im Very So Not Just Really Also Still Going Gonna Good Fine Great Okay Ok Sorry Happy Sad Tired Here
    There Back Home From The A An In At On My Your Its It This That Sure Yes No Well Oh Hey Hi Hello Thanks
    Thank Glad Excited Bored Busy Free Ready Done Always Never Trying Working Doing Feeling Looking Having
    New Old Big Little Pretty Kind Much More Less American English French Spanish Christian Muslim Jewish
    Catholic Mormon Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April
    June July August September October November December Lol Haha Lmao Omg Btw Christmas Easter""".split()
)


def _name_tokens(text: str, start: int, level: str) -> PiiSpan | None:
    """The name after a trigger: ``strong`` takes lower-case words, the others need capitals, and
    ``weak`` needs two words (a first and a last name)."""
    position = start
    title = _TITLE.match(text, position)
    if title:
        position = title.end()
    tokens: list[re.Match[str]] = []
    while len(tokens) < 4:
        match = _NAME_TOKEN.match(text, position)
        if not match:
            break
        word = match.group()
        if word.lower() in _NOT_NAMES:
            break
        if level != "strong" and (
            not word[0].isupper() or word in _CAPITALISED_NOT_NAMES or (word.isupper() and len(word) > 1)
        ):
            break
        tokens.append(match)
        gap = re.match(r"[ \t]+", text[match.end():])
        if not gap:
            break
        position = match.end() + gap.end()
    if not tokens or (level == "weak" and len(tokens) < 2):
        return None
    return PiiSpan(title.start() if title else tokens[0].start(), tokens[-1].end(), "NAME")


def _names(text: str) -> list[PiiSpan]:
    spans = []
    for trigger, level in (
        (_STRONG_NAME_TRIGGER, "strong"),
        (_MEDIUM_NAME_TRIGGER, "medium"),
        (_WEAK_NAME_TRIGGER, "weak"),
    ):
        for match in trigger.finditer(text):
            span = _name_tokens(text, match.end(), level)
            if span is not None:
                spans.append(span)
    return spans


# --------------------------------------------------------------------------- detection and masking

DETECTOR_ORDER: tuple[tuple[str, Callable[[str, str], list[PiiSpan]]], ...] = (
    ("EMAIL", lambda text, region: _emails(text)),
    ("URL", lambda text, region: _urls(text)),
    ("IBAN", lambda text, region: _ibans(text)),
    ("CARD", lambda text, region: _cards(text)),
    ("SSN", lambda text, region: _ssns(text)),
    ("ACCOUNT", lambda text, region: _accounts(text)),
    ("PHONE", _phones),
    ("ADDRESS", lambda text, region: _addresses(text)),
    ("NAME", lambda text, region: _names(text)),
)


def find_pii(text: str, region: str = "US") -> list[PiiSpan]:
    """Non-overlapping PII spans in ``text``, sorted by start (earlier detectors win overlaps)."""
    if not any(character.isdigit() or character in "@:/" for character in text) and not re.search(
        r"(?i)\b(?:name|call|go by|i'?m|i am|this is|at)\b", text
    ):
        return []  # fast path: no digit, @, / or :, no name or "at" word
    accepted: list[PiiSpan] = []
    for _, detector in DETECTOR_ORDER:
        for span in sorted(detector(text, region), key=lambda s: (s.start, -(s.end - s.start))):
            if span.end <= span.start:
                continue
            if all(span.end <= other.start or span.start >= other.end for other in accepted):
                accepted.append(span)
    return sorted(accepted, key=lambda s: s.start)


def mask_spans(text: str, spans: list[PiiSpan]) -> str:
    """``text`` with each span replaced by ``[TYPE]`` (spans must not overlap)."""
    pieces, position = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        pieces.append(text[position: span.start])
        pieces.append(f"[{span.kind}]")
        position = span.end
    pieces.append(text[position:])
    return "".join(pieces)


def mask_pii(text: str, region: str = "US") -> tuple[str, list[PiiSpan]]:
    """(masked text, the spans found in the original text)."""
    spans = find_pii(text, region)
    return (mask_spans(text, spans) if spans else text), spans
