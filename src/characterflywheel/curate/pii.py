"""PII detection and masking for chat text (Phase I, privacy half).

``find_pii(text, region)`` returns typed spans; ``mask_pii(text, region)`` replaces each with a
typed placeholder (``[EMAIL]``, ``[PHONE]``, ``[ADDRESS]``, ``[CARD]``, ``[IBAN]``, ``[ACCOUNT]``,
``[SSN]``, ``[URL]``, ``[NAME]``, ``[IP]``, ``[MAC]``, ``[HANDLE]``) and keeps every other character
as it was.

Library choice (all offline, installable from PyPI):

* Presidio is the maintained reference, but presidio-analyzer pulls in spaCy and needs a spaCy model
  fetched from the internet at set-up, and scrubadub 2.0 needs nltk/textblob corpora downloads for
  names. Neither runs offline here (neither is installed), and Presidio's pattern recognizers (email,
  IP, URL, phone, card, IBAN, ...) are regular expressions plus validators and context words, like
  ours, so we use what those libraries themselves build on:
* ``phonenumbers`` (Google's libphonenumber) finds valid phone numbers in free text in national
  and international formats (``PhoneNumberMatcher``); a context rule (a "call/text/number" word
  before a run of 7-15 digits) catches numbers it cannot validate (fictional 555 numbers, ...);
* ``python-stdnum`` validates card numbers (Luhn), IBANs (ISO 7064 mod 97-10) and US routing
  numbers (ABA checksum), so a digit run is masked as a card only when it is one;
* the standard library's ``ipaddress`` validates IPv4 and IPv6 candidates (full, ``::``-compressed,
  IPv4-mapped), so versions ("python 3.12.1"), dates ("12.05.2026") and times are not addresses;
* regular expressions (with those validators) for emails (also "name at host dot com"), URLs,
  street addresses (US style and continental "5 rue de la paix", "hauptstraße 12"), SSNs, numbers
  after an "account"-like word, MAC addresses, social handles ("@dana_k", "my insta is dana.k99",
  "u/dana_k"), and self-stated names ("my name is Jane Doe", "i'm called jane doe", "call me Jane",
  and informal ones: "im sam lol", "hey its dee from accounts", "this is priya k again").

Assumptions: text is chat (often lower case, little punctuation). Names are only detected when the
speaker states them (a pattern, not NER): third-party names in free text are kept. After a weak cue
("i'm", "it's", "this is", "call me"), which precedes an adjective far more often than a name, one
word is a name only when it is not a common English word (a stop-list and word endings such as
-ing, -ed, -ous, -ly) and the introduction visibly ends after it (or after an initial); so a name
that is also a word ("i'm april", "call me sunny") or two lower-case words ("i'm dana kowalski") are
kept there, while capitalised first-and-last names are masked. Every valid IP address is masked,
loopback and private ones included. A URL is masked when it carries something personal: a query
parameter that is not a public one (``v``, ``q``, ``utm_*``, ...), an email, a token-like path
segment (8+ letters-and-digits with 2+ of each, or 24+ of them), a profile path on a social or
creator site or any site (``/users/dana``, ``/~dana``), or a personal host (``dana.github.io``);
``https://www.youtube.com/watch?v=...`` is kept. A street needs a clear suffix (street, ave, road,
...) or, for words that are also prose (way, court, close, hill, ...), a capital letter or an
address word before it. Overlapping detections keep the first found in ``DETECTOR_ORDER`` (the more
specific type).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.us import rtn

# The types the shipped check set plants: ``checkset.py`` has one generator per type and loops over
# this tuple, so the types added for real traffic (IP, MAC, HANDLE), which have no generator there
# yet, are listed apart; ``ALL_PII_TYPES`` is every placeholder ``mask_pii`` writes.
PII_TYPES = ("EMAIL", "URL", "IBAN", "CARD", "SSN", "ACCOUNT", "PHONE", "ADDRESS", "NAME")
ALL_PII_TYPES = (*PII_TYPES, "IP", "MAC", "HANDLE")


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
    r"(?:\b(?:https?|ftp)://|\bwww\.|"
    r"\b(?=[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|ly|me|co|gl|be|tv|app|link|to|ee|gg|us|fm|dev|page|social)/))"
    r"[^\s<>\"'`]+",
    re.IGNORECASE,
)
_URL_TRAILING = ".,;:!?)]}'\""
_SOCIAL_PROFILE = re.compile(
    r"(?:facebook\.com|fb\.com|instagram\.com|twitter\.com|x\.com|linkedin\.com/in|tiktok\.com|github\.com|"
    r"reddit\.com/u(?:ser)?|venmo\.com|paypal\.me|cash\.app|t\.me|wa\.me|snapchat\.com/add|onlyfans\.com|"
    r"linktr\.ee|twitch\.tv|patreon\.com|ko-fi\.com|soundcloud\.com|pinterest\.[a-z.]+|tumblr\.com|medium\.com|"
    r"youtube\.com/(?:c|channel|user)|steamcommunity\.com/(?:id|profiles)|open\.spotify\.com/user|bsky\.app/profile|"
    r"etsy\.com/shop|discord\.gg|zoom\.us/j|threads\.net|vsco\.co|behance\.net|dribbble\.com|deviantart\.com|"
    r"letterboxd\.com|strava\.com/athletes|flickr\.com/photos)/[^/\s]+"
    # a profile path on any site: /~dana, /users/dana, /profile/dana
    r"|/(?:~|users?/|profiles?/|people/|members?/|author/)[\w.-]+",
    re.IGNORECASE,
)
# a personal site on a hosting domain, with or without a path: dana.github.io, dana.substack.com
_PERSONAL_HOSTS = (
    r"(?:github\.io|gitlab\.io|substack\.com|tumblr\.com|wordpress\.com|blogspot\.com|carrd\.co|bandcamp\.com|"
    r"itch\.io|neocities\.org|netlify\.app|vercel\.app|bsky\.social|wixsite\.com|weebly\.com)"
)
_PERSONAL_HOST = re.compile(
    rf"(?<![\w.@/-])(?:https?://)?(?!www\.)[a-z0-9-]+\.{_PERSONAL_HOSTS}\b(?:/[^\s<>\"'`]*)?", re.IGNORECASE
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
    for match in _PERSONAL_HOST.finditer(text):
        spans.append(PiiSpan(match.start(), match.start() + len(match.group().rstrip(_URL_TRAILING)), "URL"))
    return spans


# --------------------------------------------------------------------------- ip and mac addresses

# Candidates are dotted quads and colon-hex runs; ``ipaddress`` decides, so "1.2.3" (a version),
# "12.05.2026" (a date), "12:30:45" (a time) and "999.1.1.1" are not addresses. Every valid address
# is masked, loopback and private ones included (127.0.0.1, 192.168.0.10, ::1): the user typed it,
# it says something about their machine or network, and one rule is easier to trust than a list of
# harmless ranges. A four-part version after "version"/"ver"/"build" ("version 1.2.0.4") and a
# netmask ("255.255.255.0", the same for every network) are kept.
_IPV4_CANDIDATE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?![\w:])", re.IGNORECASE  # last: IPv4-mapped
)
_VERSION_CONTEXT = re.compile(r"(?:\b(?:version|ver|build|release|firmware)\.?|\bv)\s*$", re.IGNORECASE)


def _is_ip(candidate: str, version: int) -> bool:
    try:
        address = (ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address)(candidate)
    except ValueError:
        return False
    inverted = ~int(address) & 0xFFFFFFFF
    is_netmask = version == 4 and int(address) >> 31 and inverted & (inverted + 1) == 0  # 255.255.255.0, ...
    return not is_netmask


def _ips(text: str) -> list[PiiSpan]:
    spans = []
    for match in _IPV4_CANDIDATE.finditer(text) if "." in text else ():
        after_version_word = _VERSION_CONTEXT.search(text[max(0, match.start() - 12): match.start()])
        if _is_ip(match.group(), 4) and not after_version_word:
            spans.append(PiiSpan(match.start(), match.end(), "IP"))
    for match in _IPV6_CANDIDATE.finditer(text) if text.count(":") >= 2 else ():
        candidate = match.group()
        # a digit and 3+ hex digits (or "::1") are required, so "::", C++'s "a::b" or a "3::2" score are kept
        hex_digits = sum(character not in ":." for character in candidate)
        has_digit = any(character.isdigit() for character in candidate)
        if (hex_digits >= 3 or candidate == "::1") and has_digit and _is_ip(candidate, 6):
            spans.append(PiiSpan(match.start(), match.end(), "IP"))
    return spans


# six hex pairs split by ":" or "-", or three hex quads split by "." (Cisco); the dash and dot forms
# need a hex letter or a "mac"-like word before them, so a dashed or dotted run of digits (a phone,
# a date) is left to the others
_MAC = re.compile(
    r"(?<![\w:.-])(?:[0-9a-f]{2}(?P<separator>[:-])(?:[0-9a-f]{2}(?P=separator)){4}[0-9a-f]{2}|"
    r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})(?![\w:-]|\.\w)",
    re.IGNORECASE,
)
_MAC_CONTEXT = re.compile(r"\b(?:mac|hw|hardware|ether|bssid|physical)(?:\s+address)?\s*(?:is|:|=)?\s*$", re.IGNORECASE)


def _macs(text: str) -> list[PiiSpan]:
    if text.count(":") < 5 and text.count("-") < 5 and text.count(".") < 2:
        return []
    return [
        PiiSpan(match.start(), match.end(), "MAC")
        for match in _MAC.finditer(text)
        if match.group("separator") == ":" or re.search(r"[a-f]", match.group(), re.IGNORECASE)
        or _MAC_CONTEXT.search(text[max(0, match.start() - 24): match.start()])
    ]


# --------------------------------------------------------------------------- social handles

# "@dana_k" anywhere (not inside an email); without the "@", a username after a platform word only
# when it looks typed as one (a digit, "_", "." or "#" inside: "my insta is dana.k99", "snap: dk_22",
# "discord dana#1234") or when the speaker says it is theirs ("my insta is danak", "add me on snap
# danak") and it is not a common word ("my insta is private"). Reddit's "u/name" too. Slack-style
# "@everyone", and "@" used as "at" ("@5pm", "@home") are kept.
_AT_HANDLE = re.compile(r"(?<![\w@.+-])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?(?![\w@])")
_AT_NOT_A_HANDLE = re.compile(
    r"@(?:\d{1,4}(?:[:.]\d\d)?(?:am|pm|a|p)?|everyone|here|channel|all|home|work|school|night|noon|midnight|"
    r"the|my|your|me|you|him|her|them)",
    re.IGNORECASE,
)
_PLATFORM = (
    r"(?:insta(?:gram)?|ig|snap(?:\s?chat)?|tik\s?tok|twitter|discord|telegram|twitch|steam|xbox|psn|kik|"
    r"skype|reddit|threads|bluesky|bsky|mastodon|youtube|yt|github|venmo|cash\s?app|roblox|minecraft|"
    r"user\s?name|screen\s?name|handle|gamertag|gamer\s?tag)"
)
_PLATFORM_HANDLE = re.compile(
    rf"(?:(?P<mine>\bmy\s+(?:{_PLATFORM}\s+)?)|"
    rf"(?P<follow>\b(?:add|follow|find|dm|message|hmu|hit\s+me\s+up)\s+(?:me\s+)?on\s+(?:the\s+)?))?"
    rf"\b{_PLATFORM}\b(?:\s+(?:name|handle|user(?:name)?|id|account|acc|tag|@))?"
    rf"\s*(?P<separator>is\b|:|-|=|=>)?\s*"
    rf"(?P<handle>[A-Za-z0-9_](?:[A-Za-z0-9_.#-]{{0,30}}[A-Za-z0-9_])?)(?![\w@'’])",
    re.IGNORECASE,
)
_PLATFORM_WORD = re.compile(rf"\b{_PLATFORM}\b", re.IGNORECASE)
_REDDIT_USER = re.compile(r"(?<![\w/])/?u/[A-Za-z0-9_-]{3,20}\b")


def _handles(text: str) -> list[PiiSpan]:
    spans = [
        PiiSpan(match.start(), match.end(), "HANDLE")
        for match in (_AT_HANDLE.finditer(text) if "@" in text else ())
        # "@BYU", "@DC": a short acronym after "@" is a place ("at"), not a person
        if not _AT_NOT_A_HANDLE.fullmatch(match.group()) and not re.fullmatch(r"@[A-Z]{2,4}", match.group())
    ]
    for match in _PLATFORM_HANDLE.finditer(text) if _PLATFORM_WORD.search(text) else ():  # the search is faster
        handle = match.group("handle")
        typed_as_handle = (re.search(r"[\d_.#]", handle) and re.search(r"[A-Za-z]", handle) and ".." not in handle
                           and not re.fullmatch(r"\d+[A-Za-z]{0,3}", handle))  # "2x", "1080p", "3rd" are no handles
        said_to_be_theirs = match.group("follow") or (match.group("mine") and match.group("separator"))
        if typed_as_handle or (said_to_be_theirs and len(handle) >= 3 and not _is_common_word(handle)):
            spans.append(PiiSpan(match.start("handle"), match.end("handle"), "HANDLE"))
    spans += [PiiSpan(m.start(), m.end(), "HANDLE") for m in _REDDIT_USER.finditer(text)] if "u/" in text else []
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
# "... 5th ave new york ny 10118": a city and state without commas belong to the address when a ZIP ends them
_CITY_STATE_ZIP = re.compile(r"(?:,?\s+[a-z][a-z.'-]*){1,3},?\s+[a-z]{2},?\s+\d{5}(?:-\d{4})?\b", re.IGNORECASE)
# continental forms: "5 rue de la paix", "calle mayor 5", "viale roma 12", "hauptstraße 12", "keizersgracht 123"
# (not the Italian "via", which is also English: "via email 5 times")
_EUROPEAN_ADDRESS = re.compile(
    r"\b\d{1,4}[a-z]?,?\s+(?:rue|chemin|allée|allee|impasse|quai)\s+(?!the\b|a\b)"
    r"(?:de\s+la\s+|de\s+l['’]|du\s+|des\s+|de\s+|d['’])?"
    r"[^\W\d_][\w'-]*(?:\s+[^\W\d_][\w'-]*)?"
    r"|\b(?:calle|avenida|carrer|rua|viale|piazza|corso|ulica|ul\.)\s+"
    r"(?:(?:de\s+la|del|de|da|do|dos|das|della|di)\s+)?[^\W\d_][\w'-]*(?:\s+[^\W\d_][\w'-]*)?,?\s+\d{1,4}[a-z]?\b"
    r"|\b[^\W\d_]+(?:straße|strasse|str\.|gasse|weg|allee|platz|straat|laan|gracht|gatan|vej)\s+\d{1,4}[a-z]?\b",
    re.IGNORECASE,
)
_PO_BOX = re.compile(r"\b(?:p\.?\s?o\.?\s?box|post\s+office\s+box)\s*#?\s*\d+", re.IGNORECASE)
_ADDRESS_TAIL_WORDS = re.compile(
    rf"(?:,?\s*\b(?:and|but|so|if|lol|haha|btw|when|then|or|{_PLATFORM})\b.*)$", re.IGNORECASE  # "..., reddit u/x"
)


def _addresses(text: str) -> list[PiiSpan]:
    if not any(character.isdigit() for character in text):
        return []  # every form below has a house number (or a box number)
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
        end = match.start() + len((head + tail).rstrip(" ,"))
        if re.match(r"[/@#.]\w", text[end:end + 2]):  # the city part ran into a handle or a link: "..., u/tam"
            end = match.start() + len(re.sub(r"[\s,]*[\w.'-]*$", "", text[match.start(): end]))
        city = _CITY_STATE_ZIP.match(text, end)
        spans.append(PiiSpan(match.start(), city.end() if city else end, "ADDRESS"))
    spans += [PiiSpan(m.start(), m.end(), "ADDRESS") for m in _PO_BOX.finditer(text)]
    spans += [PiiSpan(m.start(), m.end(), "ADDRESS") for m in _EUROPEAN_ADDRESS.finditer(text)]
    return spans


# --------------------------------------------------------------------------- self-stated names

_END = r"(?![\w'’])\s*[,:]?\s*"
_STRONG_NAME_TRIGGER = re.compile(
    r"\b(?:my\s+(?:full\s+|real\s+|legal\s+|first\s+and\s+last\s+)?name\s*(?:is|'s|’s|=|:)|"
    r"(?:the\s+)?name['’]s|name\s*:|(?:^|(?<=\n))name\s+is|i\s*(?:'m|’m|m|am)\s+called|i'?m\s+named|my\s+names)"
    + _END,
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


# Informal self-introductions ("im sam lol", "hey its dee from accounts", "this is priya k again",
# "call me mo"): one word, often lower case, after a cue that far more often precedes an adjective
# ("i'm tired", "this is great"). The word is a name only when it is not a common English word (the
# stop-list and the word endings below), and the introduction visibly ends right after it (or after
# an initial): end of text, punctuation or emoji, "lol", "and", "from", or a strong ending ("here",
# "again", "btw", "speaking"). "it's" and "this is" introduce things far more often than people
# (on 258k real chit-chat lines, "it's <word>." is nearly always a thing), so they also need a strong
# ending, an initial ("this is priya k"), a greeting before them ("hey its dee.") or, for "this is",
# "from" ("this is omar from the gym"; not "it's": "it won its independence from england").
_INFORMAL_NAME_TRIGGER = re.compile(
    r"\b(?:(?P<thing>it\s*(?:'s|’s|s)|(?P<this>this\s+is))|"
    r"i\s*(?:'m|’m|m|am)|(?:(?:you|u)\s+can\s+|just\s+|pls\s+|please\s+)?call\s+me|calls\s+me|i\s+go\s+by)"
    r"\s+",
    re.IGNORECASE,
)
_GREETING_BEFORE = re.compile(
    r"\b(?:hey|hi|hello|hiya|heya|yo|howdy|sup)\b(?:\s+(?:there|all|guys|again|everyone))?[\s,!.~-]*$", re.IGNORECASE
)
# "dana here, quick question": a name then "here" opening a message (or a line), perhaps after a greeting
_NAME_HERE = re.compile(
    r"^(?:(?:hey|hi|hello|hiya|heya|yo)\b[\s,!.~-]*)?(?P<name>[^\W\d_]+(?:-[^\W\d_]+)*)[ \t]+here"
    r"(?=[ \t]*(?:$|[^\w\s'’]|(?<=[ \t])(?:again|btw|lol|lmao|haha\w*|from|with)\b))",
    re.IGNORECASE | re.MULTILINE,
)
_INFORMAL_NAME = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*(?![\w'’])")
_INITIAL = re.compile(r"\s+(?:[b-hj-z]|[a-z]\.)(?![\w'’])", re.IGNORECASE)
_INTRO_END = re.compile(
    r"[ \t]*(?:$|\n|[^\w\s'’]|(?<=[ \t])(?:(?P<strong>here|again|speaking|btw|by\s+the\s+way)|"
    r"(?P<origin>from)|lol|lmao|haha\w*|hehe\w*|and|nice\s+to\s+meet)\b)",
    re.IGNORECASE,
)
# Words that follow "i'm / it's / this is / call me" in chat and are not names (feelings, states,
# fillers, nationalities, times, family words), compactly by kind, on top of ``_NOT_NAMES``.
_COMMON_WORDS = _NOT_NAMES | frozenset(
    # function words, pronouns, fillers, chat tokens
    """nor onto upon mine myself yours u ur ya him his her hers us our ours them their itself whom whose whatever
    whoever whichever wherever whenever everyone everybody everything everywhere someone somebody something
    somewhere anyone anybody anything anywhere noone nobody nothing nowhere none all both each either neither
    every other another some many much more most less least few several enough own same such being were nope
    nah yeah yep yup yea okie kk alright aight still even ever never always often usually sometimes already
    almost quite rather pretty kinda sorta kind sort super totally literally honestly seriously basically
    probably definitely certainly surely clearly obviously apparently hopefully only mostly mainly yesterday
    anymore anyway anyways yet once twice home around along across behind ahead inside outside near far wanna
    done may shall finna tryna bout outta lemme dunno lmfao rofl hehe jk idk idc tbh ngl fr imo imho omg omfg
    fyi smh af asf rn irl ah ahh aw aww hmm hm um umm uh uhh eh meh wow whoa yay ugh oops ouch yo sup bye fine
    good great cool nice right wrong true false real fake legit official""".split()
    # feelings, states and other adjectives without a tell-tale ending
    + """bad sad mad glad happy sorry tired sick ill hungry thirsty sleepy busy free ready late early new old young
    fun funny weird strange odd random rare unique normal crazy insane nuts wild mental hard easy tough rough
    cheap dear safe alone alive awake asleep afraid aware lucky lazy shy calm broke rich poor tall short fat
    thin skinny big small tiny huge little large strong weak smart dumb stupid silly wise mean sweet cute ugly
    gorgeous perfect awful terrible horrible amazing awesome dope lit fire dead chill single pregnant vegan
    vegetarian gay straight bi trans queer human male female upset angry hurt broken lost stuck close full
    empty high low drunk sober clean dirty wet dry loud quiet slow fast quick open private public epic lame
    gross nasty scary creepy spooky sketchy shady messy cozy comfy brilliant genius similar familiar worth due
    fifth first second third last next best worst better worse older younger bigger smaller cheaper harder
    closer sooner nicer cooler warmer colder safer lower higher greater newer larger longer stronger smarter
    taller shorter faster slower hot cold warm sunny cloudy windy rainy snowy foggy humid chilly freezing blue
    black white red green yellow pink purple orange brown grey gray golden gold silver solid decent humble
    modest honest proud jealous curious nervous anxious serious famous fantastic intense sore blind deaf sane
    vital legal illegal total fatal brutal frugal mortal loyal royal ideal moral neutral stable able unable
    possible impossible incredible sensible flexible adorable unbelievable unsure secure mature immature pure
    obscure severe sincere extreme supreme complete concrete alert polite rude blunt direct correct strict
    exact abstract distinct mid trash cringe basic extra salty sus goat awkward local online offline solo
    average certain uncertain cruel stubborn barefoot captain round though although way daft ded inbound nerd
    geek dork fourth sixth seventh eighth ninth tenth nerdy geeky dorky goofy quirky sneaky rusty punny cheesy
    corny wacky sassy grumpy cranky moody needy picky nosy bossy chatty jumpy shaky sweaty stinky healthy
    wealthy worthy tricky tipsy dizzy fuzzy fancy pricey heavy steady sturdy tidy trendy witty petty hasty
    touchy edgy artsy handy clumsy sloppy sappy sexy hangry""".split()
    # verbs said after "i'm" in chat: participles, colloquial -in', bare forms
    + """told sold set beat torn gone shook woke known shown grown thrown blown drawn sworn worn born given taken
    written driven beaten chosen frozen spoken stolen forgotten gotten hidden bitten eaten fallen forbidden
    mistaken proven risen shaken woken swollen chillin goin sayin doin kiddin trippin vibin jokin lovin livin
    come go talk say see know think feel need try let make take give tell ask play work leave stay pre post
    non anti ex""".split()
    # nationalities, languages, faiths, places people are "from" rather than names
    + """american canadian mexican brazilian argentinian chilean peruvian colombian cuban latino latina hispanic
    british english scottish irish welsh french german dutch swiss austrian italian spanish portuguese greek
    polish russian ukrainian swedish norwegian danish finnish turkish arab arabic persian indian pakistani
    chinese japanese korean vietnamese thai filipino filipina asian african nigerian kenyan egyptian european
    australian kiwi hawaiian samoan tongan native mormon lds christian catholic protestant baptist muslim
    jewish hindu buddhist sikh atheist agnostic republican democrat liberal conservative""".split()
    # times, seasons, family words and endearments, common nouns said without an article
    + """time life art science math maths history school college class summer winter spring fall autumn weekend
    morning afternoon evening night noon midnight christmas easter halloween thanksgiving birthday monday
    tuesday wednesday thursday friday saturday sunday january february march april june july august september
    october november december mom mum dad mommy daddy mama papa brother sister bro sis dude man girl boy guy
    guys kid baby babe honey sweetie darling buddy pal friend family god heaven hell fate karma magic luck
    nature tradition music food fact facts game legend murder blood bread cake pizza coffee tea water money
    business war peace sex rain snow snowing raining pouring ten one two three four five six seven eight nine
    eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty
    hundred half part self name names number""".split()
)
# Words with these endings are nearly always ordinary words (doing, tired, nervous, lovely, ...);
# the names that share them are listed apart.
_WORD_ENDING = re.compile(
    r"\w{2,}(?:ing|ed|ous|ful|less|ness|able|ible|ish|ic|ical|ual|ial|tion|sion|ology|ment|ity|ism|ist|est|ly|"
    r"ive|ier|ary|ory|ery)|\w{3,}(?:ent|ant|ate)"
)
_NAMES_WITH_WORD_ENDINGS = frozenset(
    """fred alfred wilfred manfred winifred jared ahmed mohammed mohamed muhammed hamed reed siegfried
    irving sterling channing fleming harding manning browning ewing kipling
    emily lily kelly holly molly polly sally billy ally shelly nelly dolly milly tilly carly beverly
    kimberly
    vincent laurent clement florent bryant zachary rosemary hillary gregory mallory avery emery ernest forrest
    clive olive javier xavier olivier trish eric cedric dominic frederic alaric
    trinity charity felicity verity""".split()
)


def _is_common_word(word: str) -> bool:
    """A stop-listed word, a word with a tell-tale ending, or chat elongation ("sooo", "meeee")."""
    lower = word.lower()
    return bool(re.search(r"(\w)\1\1", lower)) or any(
        part in _COMMON_WORDS
        or (part not in _NAMES_WITH_WORD_ENDINGS and _WORD_ENDING.fullmatch(part))
        for part in lower.split("-")
    )


def _informal_names(text: str) -> list[PiiSpan]:
    spans = []
    for trigger in _INFORMAL_NAME_TRIGGER.finditer(text):
        name = _INFORMAL_NAME.match(text, trigger.end())
        if not name or len(name.group()) < 2 or name.group().isupper() or _is_common_word(name.group()):
            continue
        initial = _INITIAL.match(text, name.end())
        for end in ([initial.end()] if initial else []) + [name.end()]:
            ending = _INTRO_END.match(text, end)
            if not ending:
                continue
            introduces_a_person = (
                ending.group("strong") or end != name.end()  # an initial
                or (trigger.group("this") and ending.group("origin"))
                or _GREETING_BEFORE.search(text[max(0, trigger.start() - 24): trigger.start()])
            )
            if introduces_a_person or not trigger.group("thing"):
                spans.append(PiiSpan(name.start(), end, "NAME"))
                break
    for match in _NAME_HERE.finditer(text):
        name = match.group("name")
        if len(name) >= 2 and not name.isupper() and not _is_common_word(name):
            spans.append(PiiSpan(match.start("name"), match.end("name"), "NAME"))
    return spans


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
    return spans + _informal_names(text)


# --------------------------------------------------------------------------- detection and masking

DETECTOR_ORDER: tuple[tuple[str, Callable[[str, str], list[PiiSpan]]], ...] = (
    ("EMAIL", lambda text, region: _emails(text)),
    ("URL", lambda text, region: _urls(text)),
    ("IP", lambda text, region: _ips(text)),
    ("MAC", lambda text, region: _macs(text)),
    ("IBAN", lambda text, region: _ibans(text)),
    ("CARD", lambda text, region: _cards(text)),
    ("SSN", lambda text, region: _ssns(text)),
    ("ACCOUNT", lambda text, region: _accounts(text)),
    ("PHONE", _phones),
    ("ADDRESS", lambda text, region: _addresses(text)),
    ("HANDLE", lambda text, region: _handles(text)),
    ("NAME", lambda text, region: _names(text)),
)


# what PII without a digit, "@", "/" or ":" contains or follows: a name cue, "at" (emails), a
# platform (handles), a personal host, "mac" (Cisco "aabb.ccdd.eeff")
_CUE_WITHOUT_DIGITS = re.compile(
    rf"(?i)\b(?:name|calls?|go by|i['’]?m|i am|this is|it['’]?s|at|here|mac|{_PLATFORM})\b|\.{_PERSONAL_HOSTS}\b"
)


def find_pii(text: str, region: str = "US") -> list[PiiSpan]:
    """Non-overlapping PII spans in ``text``, sorted by start (earlier detectors win overlaps)."""
    if not any(character in "@:/" or character.isdigit() for character in text) and not _CUE_WITHOUT_DIGITS.search(text):
        return []  # fast path: nothing any detector could start from
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
