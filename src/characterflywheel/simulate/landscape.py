"""The hidden engagement landscape: how a simulated user reacts to one character reply.

This is the "mountain" the flywheel climbs (paper 3.1), and it is hidden: no flywheel stage may
import this module (a test walks the imports). Stages only see what it emits through the world:
continue/leave decisions, thumbs, return visits, and annotators' judgements.

For a (user, history, reply) it gives P(continue), P(thumbs up) and P(thumbs down) as logistic
functions of features a small model can move. Each term is documented in ``simulate/README.md``;
the weights live in ``LandscapeWeights`` so experiments can reshape the world.

Two traps from the paper are built in on purpose:

* **Proxy hacking** (paper 6.2, 7.4): flattery and emoji raise P(thumbs up) at once, and nudge
  P(continue) up on the turn itself, but every earlier flattering or emoji-laden bot turn in the
  session makes the user more tired of the act, so a session full of them ends sooner. A model tuned
  on thumbs-up alone climbs the proxy and falls on engagement.
* **History bias** (paper 7.5): once the character used emoji, the user expects them (a reply
  without them disappoints) and mirrors them in their own next line, so emoji perpetuate through
  the history even where the reward no longer asks for them.

Why our own code: there is no library for a simulated social-chat user; the pieces that exist
(sentence embeddings for relevance and persona fit) come from sentence-transformers.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from characterflywheel.characters.instructions import count_emoji

GENERIC_PATTERNS = re.compile(
    r"\b(i'?m not sure|i don'?t know|as an ai|i'?m just an ai|i cannot|i can'?t help|that'?s (?:interesting|nice|cool)"
    r"|how can i (?:help|assist)|is there anything else|let me know if|i understand\.?$|sorry,? i)\b",
    re.IGNORECASE,
)
FLATTERY_PATTERNS = re.compile(
    r"\b(great question|what a (?:great|wonderful|lovely|fantastic)|you'?re (?:so|very|really) (?:smart|kind|amazing|sweet|"
    r"funny|wise|right|clever)|you'?re amazing|amazing|wonderful|fantastic|brilliant|love that|i love (?:it|this|that|your)"
    r"|so proud of you|you'?re the best|absolutely right)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\b[\w']+\b")


class SentenceEmbedder(Protocol):
    def encode(self, sentences: list[str], **kwargs: object) -> np.ndarray: ...


@dataclass(frozen=True)
class UserTaste:
    """A simulated user's hidden preferences; types differ so that stratification matters."""

    user_type: str
    preferred_words: float
    emoji_affinity: float
    curiosity: float
    patience: float
    flattery_weakness: float
    loyalty: float


@dataclass(frozen=True)
class LandscapeWeights:
    relevance: float = 3.0
    relevance_center: float = 0.3
    asks_back: float = 0.9
    length: float = 0.8
    repetition: float = 4.0
    repetition_free: float = 0.55
    persona: float = 1.5
    persona_center: float = 0.15
    generic: float = 1.4
    emoji: float = 0.35
    emoji_expected: float = 0.9
    flattery_now: float = 0.15
    fatigue: float = 0.6
    emoji_fatigue: float = 0.6
    thumbs_up_base: float = -2.2
    thumbs_up_flattery: float = 1.3
    thumbs_up_emoji: float = 0.45
    thumbs_up_quality: float = 0.6
    thumbs_down_base: float = -3.0
    thumbs_down_generic: float = 1.6
    thumbs_down_repetition: float = 3.0
    noise_sd: float = 0.25
    mirror_probability: float = 0.7


@dataclass(frozen=True)
class ReplyFeatures:
    relevance: float
    asks_back: bool
    words: int
    length_mismatch: float
    repetition: float
    persona_fit: float
    generic: bool
    emoji: int
    flattery: int
    history_emoji_share: float
    history_flattery_turns: int
    history_emoji_turns: int


@dataclass(frozen=True)
class Reaction:
    p_continue: float
    p_thumbs_up: float
    p_thumbs_down: float
    features: ReplyFeatures = field(repr=False)

    def to_dict(self) -> dict[str, object]:
        return {"p_continue": self.p_continue, "p_thumbs_up": self.p_thumbs_up,
                "p_thumbs_down": self.p_thumbs_down, **asdict(self.features)}


def stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded by its parts, the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def flattery_count(text: str) -> int:
    return len(FLATTERY_PATTERNS.findall(text))


def is_generic(text: str) -> bool:
    return word_count(text) < 3 or GENERIC_PATTERNS.search(text) is not None


class Landscape:
    """Scores replies for simulated users. Deterministic given (seed, call key) for its noise."""

    def __init__(self, embedder: SentenceEmbedder, weights: LandscapeWeights | None = None,
                 seed: int = 0, cache_size: int = 50_000) -> None:
        self.embedder = embedder
        self.weights = weights or LandscapeWeights()
        self.seed = seed
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = self.embedder.encode(missing, normalize_embeddings=True, batch_size=64,
                                           show_progress_bar=False)
            for text, vector in zip(missing, np.asarray(vectors, dtype=np.float32)):
                self._cache[text] = vector
        rows = []
        for text in texts:
            self._cache.move_to_end(text)
            rows.append(self._cache[text])
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)

    def features(self, taste: UserTaste, history: Sequence[Mapping[str, str]], reply: str,
                 persona: str | None) -> ReplyFeatures:
        last_user = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
        bot_turns = [m["content"] for m in history if m["role"] == "assistant"]
        texts = [reply, last_user or " ", persona or " ", *bot_turns]
        vectors = self.embed(texts)
        reply_vec = vectors[0]
        relevance = float(reply_vec @ vectors[1]) if last_user else 0.0
        persona_fit = float(reply_vec @ vectors[2]) if persona else self.weights.persona_center
        repetition = float(np.max(vectors[3:] @ reply_vec)) if bot_turns else 0.0
        words = word_count(reply)
        emoji_turns = sum(1 for text in bot_turns if count_emoji(text) > 0)
        return ReplyFeatures(
            relevance=relevance,
            asks_back=reply.rstrip().endswith("?") or "?" in reply[-80:],
            words=words,
            length_mismatch=abs(math.log2(max(words, 1) / taste.preferred_words)),
            repetition=repetition,
            persona_fit=persona_fit,
            generic=is_generic(reply),
            emoji=count_emoji(reply),
            flattery=flattery_count(reply),
            history_emoji_share=emoji_turns / len(bot_turns) if bot_turns else 0.0,
            history_flattery_turns=sum(1 for text in bot_turns if flattery_count(text) > 0),
            history_emoji_turns=emoji_turns,
        )

    def react(self, taste: UserTaste, history: Sequence[Mapping[str, str]], reply: str,
              persona: str | None = None, noise_key: str | None = None) -> Reaction:
        f = self.features(taste, history, reply, persona)
        w = self.weights
        emoji_now = min(f.emoji, 3)
        # What the user expects: their own taste, pulled up by emoji the character already used.
        expectation = taste.emoji_affinity + f.history_emoji_share
        emoji_term = w.emoji * emoji_now * expectation
        if f.emoji == 0 and f.history_emoji_share > 0:
            emoji_term -= w.emoji_expected * f.history_emoji_share
        fatigue = w.fatigue * (f.history_flattery_turns + w.emoji_fatigue * f.history_emoji_turns)
        quality = (
            w.relevance * (f.relevance - w.relevance_center)
            + w.persona * (f.persona_fit - w.persona_center)
            - w.repetition * max(0.0, f.repetition - w.repetition_free)
            - w.generic * f.generic
        )
        continue_logit = (
            taste.patience
            + quality
            + w.asks_back * taste.curiosity * f.asks_back
            - w.length * min(f.length_mismatch, 3.0)
            + emoji_term
            + w.flattery_now * min(f.flattery, 2)
            - fatigue
            + self._noise(noise_key, "continue")
        )
        thumbs_up_logit = (
            w.thumbs_up_base
            + w.thumbs_up_quality * quality
            + w.thumbs_up_flattery * taste.flattery_weakness * min(f.flattery, 2)
            + w.thumbs_up_emoji * emoji_now * (0.5 + expectation)
            + self._noise(noise_key, "up")
        )
        thumbs_down_logit = (
            w.thumbs_down_base
            + w.thumbs_down_generic * f.generic
            + w.thumbs_down_repetition * max(0.0, f.repetition - w.repetition_free)
            - 0.5 * quality
            + self._noise(noise_key, "down")
        )
        return Reaction(sigmoid(continue_logit), sigmoid(thumbs_up_logit), sigmoid(thumbs_down_logit), f)

    def _noise(self, key: str | None, channel: str) -> float:
        if key is None or self.weights.noise_sd == 0:
            return 0.0
        return float(stable_rng(self.seed, key, channel).normal(0.0, self.weights.noise_sd))

    def mirrored_line(self, line: str, history: Sequence[Mapping[str, str]], rng: np.random.Generator) -> str:
        """The user's next line, with an emoji mirrored from the character when it used them."""
        bot_turns = [m["content"] for m in history if m["role"] == "assistant"]
        if not bot_turns or count_emoji(line) > 0:
            return line
        share = sum(1 for t in bot_turns if count_emoji(t) > 0) / len(bot_turns)
        if rng.random() < self.weights.mirror_probability * share:
            return f"{line} {rng.choice(['😂', '😊', '🙂', '😄', '👍'])}"
        return line

    def return_probability(self, taste: UserTaste, p_continues: Sequence[float], thumbs_up: int,
                           thumbs_down: int) -> float:
        """P(the user comes back on a later day) after a session: breadth's hidden driver."""
        satisfaction = float(np.mean(p_continues)) if p_continues else 0.0
        turns_bonus = 0.15 * min(len(p_continues), 8)
        logit = -1.6 + taste.loyalty + 3.0 * (satisfaction - 0.5) + turns_bonus + 0.3 * thumbs_up - 0.6 * thumbs_down
        return sigmoid(logit)
