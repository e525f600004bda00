"""Unsafe-content classifier for chat lines (Phase I, safety half).

Categories dropped: ``sexual_minors`` (sexual content involving minors), ``self_harm``
(encouraging self-harm or suicide, or stating the intent), ``hate`` (dehumanising a protected
group), ``violent_threat`` (a threat of violence against a person or place).

Why this classifier: the maintained safety classifiers (detoxify, Llama Guard, the OpenAI
moderation endpoint) download checkpoints or call a service, which we cannot do offline; the
embedded all-MiniLM-L6-v2 is already here. So: a multinomial logistic regression (scikit-learn) on
MiniLM sentence embeddings, trained on a small shipped labelled seed set (``safety_seed.jsonl``:
hand-written unsafe lines per category and hard negatives such as "this homework is killing me"),
plus real chit-chat lines as safe examples (a fixed slice of the ``chitchat_dataset`` that the
check set does not use). Embeddings carry the meaning, so the classifier generalises beyond the
seed wording. Alone it is topic-driven ("kids", "rest", "poor families" score high), and one
flagged sentence drops a whole conversation of some 40 sentences, so it needs a very low
false-positive rate per sentence. Hence two routes to "unsafe", judged per sentence (an unsafe
sentence inside a long friendly message would be diluted in the message's embedding):

* the classifier alone, at a strict threshold (calibrated to flag 0.1 % of real chit-chat
  sentences, out of fold);
* cue words of a category (a lexicon: a minor word and a sexual word; a self-harm or death word; a
  group or dehumanising word; a violence word) together with P(unsafe) above a looser threshold
  (calibrated to flag a few % of the real sentences that hold such cues).

The check set (``checkset.py``) measures recall and precision on lines the classifier never
saw. A team with a GPU and a hub should swap this for Llama Guard behind the same ``classify``.

Training embeds about 1,650 sentences once (then cached on disk); embeddings go through the same
``EmbeddingCache`` as everything else.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import islice
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from characterflywheel.curate.embedding import EmbeddingCache

UNSAFE_CATEGORIES = ("sexual_minors", "self_harm", "hate", "violent_threat")
SAFE = "safe"
SEED_FILENAME = "safety_seed.jsonl"
NEGATIVE_CONVERSATIONS = slice(6000, None)
"""Chit-chat conversations (dataset order) whose lines are safe training examples; the check set
uses 5000-6000 and seed traffic starts at 0."""

_MINOR = re.compile(
    r"\b(?:child|children|kids?|minors?|underage|little\s+(?:girl|boy|sister|brother)|pre-?teens?|school\s?(?:girl|boy)s?|"
    r"middle\s+school|elementary|(?:fifth|sixth|fourth)\s+grader|loli|cp|"
    r"(?:[1-9]|1[0-7])\s*(?:yo|y/o|yrs?|years?)(?:[- ]old)?|"
    r"(?:eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen)(?:[- ]years?[- ]old)?)\b",
    re.IGNORECASE,
)
_SEXUAL = re.compile(
    r"\b(?:sex\w*|nudes?|naked|porn\w*|erotic|undress\w*|touch(?:ing)?|dirty|clothes\s+off|take\s+off\s+your\s+clothes|"
    r"horny|hook\s+up|sleep\s+with|molest\w*|groom\w*)\b",
    re.IGNORECASE,
)
_CUES: dict[str, re.Pattern[str]] = {
    "self_harm": re.compile(
        r"\b(?:(?:kill|hurt|cut|hang|harm|end|off|starve|hit)\s+(?:yo)?ur\s*self|kill\w*\s+myself|kys|suicid\w*|"
        r"overdos\w*|wrists?|better\s+off\s+dead|(?:go|just)\s+die|want\s+to\s+die|jump\w*\s+(?:off|from)|"
        r"end\s+(?:it|it\s+all|my\s+life|your\s+life)|stop\s+eating|starv\w*|purg\w*|bleach|pills|meds|"
        r"hang\w*\s+myself|cut\w*\s+(?:your|my)\s+arms?|dead|die|death)\b",
        re.IGNORECASE,
    ),
    "hate": re.compile(
        r"\b(?:immigrants?|refugees?|foreigners?|muslims?|islam\w*|jews?|jewish|christians?|gays?|lesbians?|homos?|"
        r"trans(?:gender)?|queers?|blacks?|black\s+people|whites?|white\s+people|asians?|chinese|mexicans?|arabs?|"
        r"hindus?|gypsies|roma|women|females|disabled|wheelchairs?|retard\w*|"
        r"vermin|sub-?human\w*|parasites?|cockroach\w*|savages?|abominations?|inferior|mongrels?|rats|"
        r"wiped?\s+out|exterminat\w*|eradicat\w*|purify|pure\s+race|race)\b",
        re.IGNORECASE,
    ),
    "violent_threat": re.compile(
        r"\b(?:kill|stab|shoot|shot|murder|strangle|beat|bomb|blow\w*\s+up|burn|fire|poison|hunt|gut|smash|"
        r"break|snap|torture|bullet|gun|rifle|knife|dead\s+meat|you(?:'re|\s+are)\s+dead|watch\s+your\s+back|"
        r"where\s+you\s+live|run\s+\w+\s+over)\w*",
        re.IGNORECASE,
    ),
}


def lexicon_categories(text: str) -> list[str]:
    """The categories whose cue words ``text`` holds (a minor and a sexual word for sexual_minors)."""
    found = ["sexual_minors"] if _MINOR.search(text) and _SEXUAL.search(text) else []
    return found + [category for category, pattern in _CUES.items() if pattern.search(text)]


@dataclass(frozen=True)
class SafetyVerdict:
    category: str | None
    """The unsafe category, or None for a safe line."""
    probability: float
    """Classifier probability that the line is unsafe (any category)."""
    lexicon: str | None
    """The cue category that confirmed the verdict, if any."""

    @property
    def unsafe(self) -> bool:
        return self.category is not None


def read_seed_set(path: Path | None = None) -> list[tuple[str, str]]:
    """(text, label) pairs of the shipped seed set; a bad line is a one-line error."""
    path = path or Path(str(resources.files("characterflywheel.curate") / SEED_FILENAME))
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            label = record.get("label")
            if label not in (SAFE, *UNSAFE_CATEGORIES):
                raise ValueError(f"{path}:{number}: label: {label!r} is not one of {SAFE}, {', '.join(UNSAFE_CATEGORIES)}")
            if not isinstance(record.get("text"), str) or not record["text"].strip():
                raise ValueError(f"{path}:{number}: text: must be a non-empty string")
            pairs.append((record["text"], label))
    return pairs


def chitchat_negatives(count: int, seed: int = 0) -> list[str]:
    """``count`` real chit-chat sentences (2-40 words, split as ``classify`` splits messages) from
    ``NEGATIVE_CONVERSATIONS``, seeded."""
    from characterflywheel.data.chitchat import load_raw_chitchat

    sentences = []
    raw = load_raw_chitchat()
    for conversation in islice(raw.values(), NEGATIVE_CONVERSATIONS.start, NEGATIVE_CONVERSATIONS.stop):
        for run in conversation.get("messages", []):
            for bubble in run:
                text = bubble.get("text")
                if isinstance(text, str):
                    sentences += [s for s in split_sentences(text) if 2 <= len(s.split()) <= 40]
    sentences = list(dict.fromkeys(sentences))
    random.Random(seed).shuffle(sentences)
    return sentences[:count]


class SafetyClassifier:
    """MiniLM embeddings -> logistic regression over safe + 4 unsafe categories, plus cue words.

    A sentence is unsafe when P(unsafe) >= ``threshold`` (strict), or when it holds cue words and
    P(unsafe) >= ``cue_threshold`` (its category: the cued one the classifier finds most likely).
    Thresholds left ``None`` are calibrated at fit time from out-of-fold (5-fold) probabilities of
    the safe training sentences: ``threshold`` at the ``1 - strict_false_positive_rate`` quantile
    of P(unsafe), ``cue_threshold`` at the ``1 - cue_false_positive_rate`` quantile among safe
    sentences with cues -- so the flag rate on real chit-chat is set, whatever the embedder."""

    def __init__(self, cache: EmbeddingCache, threshold: float | None = None, cue_threshold: float | None = None,
                 negatives: int = 1500, seed: int = 0, seed_path: Path | None = None,
                 strict_false_positive_rate: float = 0.001, cue_false_positive_rate: float = 0.1) -> None:
        self.cache = cache
        self.threshold = threshold
        self.cue_threshold = cue_threshold
        self.negatives = negatives
        self.seed = seed
        self.seed_path = seed_path
        self.strict_false_positive_rate = strict_false_positive_rate
        self.cue_false_positive_rate = cue_false_positive_rate
        self._model: LogisticRegression | None = None

    def _new_model(self) -> LogisticRegression:
        return LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, random_state=self.seed)

    def fit(self) -> SafetyClassifier:
        pairs = read_seed_set(self.seed_path)
        pairs += [(line, SAFE) for line in chitchat_negatives(self.negatives, self.seed)]
        texts, label_list = zip(*pairs)
        features = self.cache.embed(list(texts))
        labels = np.array(label_list)
        self._model = self._new_model().fit(features, labels)
        if self.threshold is None or self.cue_threshold is None:
            folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=self.seed)
            out_of_fold = cross_val_predict(self._new_model(), features, labels, cv=folds, method="predict_proba")
            classes = sorted(set(label_list))
            safe_rows = labels == SAFE
            if self.threshold is None:
                p_unsafe = 1.0 - out_of_fold[safe_rows, classes.index(SAFE)]
                self.threshold = float(np.quantile(p_unsafe, 1.0 - self.strict_false_positive_rate))
            if self.cue_threshold is None:
                cued = [
                    1.0 - out_of_fold[row, classes.index(SAFE)]
                    for row in np.flatnonzero(safe_rows)
                    if lexicon_categories(texts[row])
                ]
                self.cue_threshold = float(np.quantile(cued, 1.0 - self.cue_false_positive_rate)) if cued else 0.5
        return self

    def unsafe_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 4) probabilities of the unsafe categories, in ``UNSAFE_CATEGORIES`` order."""
        if self._model is None:
            self.fit()
        assert self._model is not None
        if not texts:
            return np.zeros((0, len(UNSAFE_CATEGORIES)))
        probabilities = self._model.predict_proba(self.cache.embed(list(texts)))
        columns = [list(self._model.classes_).index(category) for category in UNSAFE_CATEGORIES]
        return probabilities[:, columns]

    def _judge(self, sentence: str, row: np.ndarray) -> SafetyVerdict:
        assert self.threshold is not None and self.cue_threshold is not None  # set by fit()
        p_unsafe = float(row.sum())
        cued = [(float(row[UNSAFE_CATEGORIES.index(c)]), c) for c in lexicon_categories(sentence)]
        if cued and p_unsafe >= self.cue_threshold:
            category = max(cued)[1]  # the cued category the classifier finds most likely
            return SafetyVerdict(category, p_unsafe, category)
        if p_unsafe >= self.threshold:
            return SafetyVerdict(UNSAFE_CATEGORIES[int(np.argmax(row))], p_unsafe, None)
        return SafetyVerdict(None, p_unsafe, None)

    def classify(self, texts: Sequence[str]) -> list[SafetyVerdict]:
        """One verdict per text, judged sentence by sentence (an unsafe sentence inside a long
        friendly message would otherwise be diluted in the message's embedding): the first unsafe
        sentence decides, else the text is safe with its highest P(unsafe)."""
        segments_of = [split_sentences(text) for text in texts]
        distinct = list(dict.fromkeys(segment for segments in segments_of for segment in segments))
        if self._model is None:
            self.fit()
        rows = dict(zip(distinct, self.unsafe_probabilities(distinct)))
        verdicts = []
        for segments in segments_of:
            judged = [self._judge(segment, rows[segment]) for segment in segments]
            unsafe = next((verdict for verdict in judged if verdict.unsafe), None)
            verdicts.append(unsafe or max(judged, key=lambda verdict: verdict.probability))
        return verdicts


_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+|\s+-+\s+|\s*;\s*")


def split_sentences(text: str, max_segments: int = 12) -> list[str]:
    """Sentences of a chat message (at . ! ? ; dashes and line breaks); at most ``max_segments``,
    the rest joined into the last one. A message without a break is one segment."""
    parts = [part.strip() for part in _SENTENCE_BREAK.split(text) if part and part.strip()]
    if not parts:
        return [text]
    if len(parts) > max_segments:
        parts = parts[: max_segments - 1] + [" ".join(parts[max_segments - 1:])]
    return parts
