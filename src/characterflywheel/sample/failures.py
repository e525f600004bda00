"""The policy's own failure modes, read off a candidate reply: what must never be an SFT target
or a ``chosen`` reply, and what makes the best ``rejected`` one.

* **cut off**: the token budget ended the reply mid-sentence (``finish_reason == "length"``).
  Training on it with an end token appended teaches the policy to stop mid-sentence.
* **loop**: the reply repeats itself ("I love classical. I love classical. ..."): a sentence said
  twice, one word sequence said three times, one word more than half of the words, fewer than half
  of 8+ words distinct (in any run of 16), or one character (an emoji) five times in a row. The
  distinct-words rule is what a scrambled model's word salad trips ("enthus hypocr hypocr enthus
  PhDs ..."); on 13,312 truth-set replies of real generations it flags 38 that the other rules miss,
  each a repetition
  ("Serving a purpose, serving a purpose, serving a purpose."). Counted over the whole reply instead
  of a run of 16, a long reply's common words would add up to a false alarm.
* **too short**: fewer than ``min_words`` words (5 by default: "Hello!", "Hail!", "Good morning!"):
  finished, so it survives the cut-off check; the reward models learn little about such replies,
  can score them highest, and a policy trained on them turns terse a little more each generation.
* **emoji spam**: more than ``MAX_EMOJI`` emoji in one reply, or ``MAX_EMOJI`` of them in a row
  ("🎉👏🔬", "😄 🔴🔴"). A card that asks for emoji is kept by one; where a card's rule made emoji
  candidates the only rule-keeping ones, replies of 5 to 16 mixed emoji became SFT targets and the
  child two generations on wrote 3.9 emoji a reply against 0.02 (`demo11`, docs/climb.md "Tenth round").
* **echo**: more than ``ECHO_SHARE`` (30 %) of the reply's word trigrams said already in one earlier
  reply of the character in the same conversation (a second reply that repeats the first, verbatim or
  nearly). Read off one reply it looks fine, and a truth set or a gate of single-turn prompts never
  sees it; users do, on the second turn. In `five13` the share of a window's later replies that echoed
  an earlier one rose from 0.07-0.11 (generation 0) to 0.51 (generation 5's challenger), and the last
  windows lost users at the second reply (docs/climb.md). Needs the conversation: ``earlier``.
* **generic closer**: a stock phrase that could follow any message ("How can I help you today?",
  "Is there anything else ...", "Let me know if ..."), the assistant habit a character chat model
  drifts to when it collapses onto what is safe for every prompt.

A preference pair whose rejected side is one of these (or a broken card rule) teaches DPO exactly
the habits to unlearn, whatever the reward models' margin; a pair of two fine replies teaches only
the reward models' taste, which is noisier.

Why our own code: these are string checks on one reply (and, for an echo, the conversation's earlier
replies); no library names a chat policy's degenerate outputs. The generic-closer list is a product
team's own style guide, kept short.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from characterflywheel.characters.instructions import grapheme_clusters, is_emoji_cluster

GENERIC_CLOSERS = re.compile(
    r"\b(how (?:can|may) i (?:help|assist)(?: you)?(?: today)?|is there anything else|anything else i can"
    r"|let me know if (?:you|there)|feel free to (?:ask|reach out)|i'?m here to help|as an ai)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?…]+[.!?…]*")
_WORD = re.compile(r"[\w']+")
_CHARACTER_RUN = re.compile(r"([^\s\w.])(?:\s*\1){4,}")
MIN_WORDS = 5
MAX_EMOJI = 3
ECHO_SHARE = 0.3
CUT_OFF, LOOP, GENERIC, TOO_SHORT, BREAKS_RULES = "cut_off", "loop", "generic_closer", "too_short", "breaks_rules"
EMOJI_SPAM, ECHO = "emoji_spam", "echo"


def loops(reply: str, ngram: int = 4, repeats: int = 3) -> bool:
    """A sentence said twice (of at least three words), an ``ngram``-word run said ``repeats`` times, one
    word making more than half of four or more, fewer than half of eight or more words distinct (in any
    run of 16), or one non-space character five times in a row (emoji spam)."""
    if _CHARACTER_RUN.search(reply):
        return True
    sentences = [" ".join(_WORD.findall(s.lower())) for s in _SENTENCE.findall(reply)]
    sentences = [s for s in sentences if len(s.split()) >= 3]
    if len(sentences) != len(set(sentences)):
        return True
    words = _WORD.findall(reply.lower())
    if len(words) >= 4 and 2 * max(Counter(words).values()) > len(words):
        return True  # one word is most of the reply ("anyway our anyway anyway"): scrambled weights
    if _few_distinct(words):
        return True  # a few words shuffled ("enthus hypocr hypocr enthus PhDs enthus"): scrambled weights too
    runs = Counter(tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1))
    return bool(runs) and max(runs.values()) >= repeats


def _few_distinct(words: Sequence[str], span: int = 16) -> bool:
    """Fewer than half the words distinct in some run of ``span`` words (all of them when 8 to ``span``):
    a window, so a long reply's common words do not add up to a false alarm."""
    if len(words) < 8:
        return False
    width = min(span, len(words))
    return any(2 * len(set(words[i:i + width])) < width for i in range(len(words) - width + 1))


def emoji_spam(reply: str, most: int = MAX_EMOJI) -> bool:
    """More than ``most`` emoji in the reply, or ``most`` of them in a row (whitespace between them
    does not break a row)."""
    if reply.isascii():  # no emoji (":)" is not one)
        return False
    total = row = 0
    for cluster in grapheme_clusters(reply):
        if cluster.isspace():
            continue
        emoji = is_emoji_cluster(cluster)
        total, row = total + emoji, row + 1 if emoji else 0
        if row >= most or total > most:
            return True
    return False


def word_trigrams(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def echoes(reply: str, earlier: Sequence[str], share: float = ECHO_SHARE) -> bool:
    """More than ``share`` of the reply's distinct word trigrams appear in one of the ``earlier`` replies
    (the character's own earlier turns of the conversation). A reply of fewer than three words has no
    trigrams and echoes nothing (``too_short`` catches it)."""
    own = word_trigrams(reply)
    if not own or not earlier:
        return False
    return any(len(own & word_trigrams(before)) > share * len(own) for before in earlier)


def earlier_replies(conversation: Sequence[Mapping[str, str]]) -> list[str]:
    """The character's replies so far in a conversation (its assistant turns), oldest first."""
    return [message["content"] for message in conversation if message.get("role") == "assistant"]


def generic_closer(reply: str) -> bool:
    return GENERIC_CLOSERS.search(reply) is not None


def too_short(reply: str, min_words: int = MIN_WORDS) -> bool:
    return len(_WORD.findall(reply)) < min_words


def broken_reply(reply: str, min_words: int = MIN_WORDS, earlier: Sequence[str] = ()) -> bool:
    """Broken as text, whatever the reward models think of it: a loop, emoji spam, too short (what
    scrambled weights write: "(   (  world") or an echo of one of the ``earlier`` replies of the
    conversation. A generic closer is a habit, not breakage."""
    return loops(reply) or emoji_spam(reply) or too_short(reply, min_words) or echoes(reply, earlier)


def degenerate_reply(reply: str, min_words: int = MIN_WORDS, earlier: Sequence[str] = ()) -> bool:
    return broken_reply(reply, min_words, earlier) or generic_closer(reply)


@dataclass(frozen=True)
class Failures:
    """One prompt's candidates: which are cut off or degenerate (loop, generic closer, too short, an
    echo of an earlier reply: ``echo``, a part of ``degenerate``), as boolean arrays, and how many of
    the card's applicable rules each breaks (``broken_rules``)."""

    cut_off: np.ndarray
    degenerate: np.ndarray
    broken_rules: np.ndarray
    echo: np.ndarray | None = None

    @property
    def breaks_rules(self) -> np.ndarray:
        """The candidates that break more of the card's rules than the prompt's best candidate (the
        fewest broken among those that could be kept: finished and not degenerate, else among all).

        Rules bind where some candidate keeps them: a card with one rule the model never keeps
        (no first person, lower case only) still has its other rules selected for, where counting a
        reply as keeping or breaking its card as a whole left every rule of such a card unselected
        (five5: 'end with a question' broken by 86 of 120 replies of the final champion, the card's
        'no first person' by 81 of 88). With 0/1 counts this is "breaks a rule where some candidate
        keeps them all"."""
        broken = np.asarray(self.broken_rules, dtype=int)
        if not broken.size:
            return np.zeros(0, dtype=bool)
        keepable = ~self.cut_off & ~self.degenerate
        fewest = broken[keepable].min() if keepable.any() else broken.min()
        return broken > fewest

    @property
    def binding_rules(self) -> np.ndarray:
        """Rule breakers where the rules bind (see ``breaks_rules``: only candidates that break more
        rules than another candidate of the prompt are faulted)."""
        return self.breaks_rules

    @property
    def any(self) -> np.ndarray:
        return self.cut_off | self.degenerate | self.binding_rules

    def rejectable(self, chosen: int) -> np.ndarray:
        """The candidates that may be the rejected side of a pair against ``chosen``, one tier only:
        the rule breakers where ``chosen`` keeps the rules, else loops, generic closers and too-short
        replies, else cut-off replies; empty when ``chosen`` fails itself or nothing fails.
        Cut-offs come last because a pair against a reply that ran past the token budget also says
        "shorter" in general: with them first (most prompts have one), children turned terser each
        generation and the degenerate replies that users leave rose unopposed."""
        if self.breaks_rules.any() and not self.breaks_rules[chosen]:
            return np.flatnonzero(self.breaks_rules)
        if self.any[chosen]:
            return np.empty(0, dtype=int)
        for tier in (self.degenerate, self.cut_off):
            if tier.any():
                return np.flatnonzero(tier)
        return np.empty(0, dtype=int)

    def reason(self, position: int, replies: Sequence[str]) -> str | None:
        """The first failure of candidate ``position`` (None: it has none)."""
        if self.binding_rules[position]:
            return BREAKS_RULES
        if self.cut_off[position]:
            return CUT_OFF
        if self.degenerate[position]:
            reply = replies[position]
            echo = self.echo is not None and bool(self.echo[position])
            return (LOOP if loops(reply) else EMOJI_SPAM if emoji_spam(reply) else GENERIC if generic_closer(reply)
                    else ECHO if echo else TOO_SHORT)
        return None


def find_failures(replies: Sequence[str], cut_off: Sequence[bool], broken_rules: Sequence[int],
                  min_words: int = MIN_WORDS, earlier: Sequence[str] = ()) -> Failures:
    """The failure flags of one prompt's candidates; ``broken_rules``: how many of its card's rules each
    breaks (booleans count as 0/1); ``earlier``: the character's replies so far in the prompt's
    conversation (``earlier_replies``), which a candidate must not echo."""
    echo = np.array([echoes(reply, earlier) for reply in replies], dtype=bool).reshape(-1)
    degenerate = np.array([degenerate_reply(reply, min_words) for reply in replies], dtype=bool).reshape(-1) | echo
    return Failures(np.asarray(cut_off, dtype=bool).reshape(-1), degenerate,
                    np.asarray(broken_rules, dtype=int).reshape(-1), echo)
