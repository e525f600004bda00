"""Simulated annotators: an internal quality guideline, applied with bias and noise.

The guideline is what a content team would write: relevant to what the user said, in character,
follows the creator's rules, not generic, a reasonable length, not sycophantic. It correlates
with engagement (relevance, persona and genericness drive both) but is not engagement: it
ignores each user's taste (length, emoji, being asked back) and it *penalises* flattery, which
users reward with thumbs-up. So annotations and user signals disagree where the paper saw them
disagree (section 6.2: user-signal win rate up while internal win rate fell).

Each annotator has a rating bias (a lenient or strict rater), a noise level and a pairwise
"temperature"; agreement between them is reported with Cohen's kappa (scikit-learn).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import cohen_kappa_score

from characterflywheel.characters import Character
from characterflywheel.data.annotation import Annotation, AnnotationTask, Label
from characterflywheel.characters.instructions import check_reply, count_emoji
from characterflywheel.simulate.landscape import Landscape, flattery_count, is_generic, stable_rng, word_count

__all__ = ["Annotator", "AnnotatorPool", "Guideline", "agreement", "make_annotators"]


@dataclass(frozen=True)
class Annotator:
    """A simulated rater: ``bias`` shifts ratings (positive: lenient), ``noise`` is the sd of their
    per-item misjudgement of the guideline score, ``pairwise_temperature`` how decisive they are."""

    annotator_id: str
    bias: float
    noise: float
    pairwise_temperature: float

    def __post_init__(self) -> None:
        if not self.annotator_id:
            raise ValueError("annotator_id must be non-empty")
        if self.noise < 0 or self.pairwise_temperature <= 0:
            raise ValueError(f"{self.annotator_id}: noise must be >= 0 and pairwise_temperature > 0")


def make_annotators(count: int, seed: int = 0) -> list[Annotator]:
    """``count`` annotators ``ann-0`` .. with biases ~ N(0, 0.35), noise in [0.2, 0.6] and pairwise
    temperature in [0.3, 0.7]; annotator i is the same for a seed whatever ``count`` is."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    annotators = []
    for index in range(count):
        rng = stable_rng(seed, "annotator", index)
        annotators.append(Annotator(f"ann-{index}", float(rng.normal(0, 0.35)), float(rng.uniform(0.2, 0.6)),
                                    float(rng.uniform(0.3, 0.7))))
    return annotators


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class Guideline:
    """The internal quality score of a reply (higher is better), before annotator noise.

    score = 2.5 (relevance - 0.3) + 1.5 (persona fit - 0.15) - 0.8 per broken card rule
            - 1.5 generic - 0.6 length penalty (outside 8-60 words, in octaves, at most 3)
            - 0.5 per flattery phrase (at most 2) - 0.1 per emoji beyond what the card asks (at most 3)

    Relevance is the cosine between the reply and the last user line, persona fit the cosine between
    the reply and the character's persona (MiniLM, through the landscape's cached embedder).
    ``characters`` is a mapping id -> Character or an iterable of Characters; a task naming a
    character outside it is a KeyError (scoring it without its card would silently skip its rules).
    """

    def __init__(self, landscape: Landscape, characters: Mapping[str, Character] | Iterable[Character]) -> None:
        self.landscape = landscape
        if isinstance(characters, Mapping):
            self.characters: dict[str, Character] = dict(characters)
        else:
            self.characters = {character.id: character for character in characters}
        self._cache: dict[tuple[str, str, str], float] = {}

    def _character(self, character_id: str | None) -> Character | None:
        if character_id is None:
            return None
        try:
            return self.characters[character_id]
        except KeyError:
            raise KeyError(f"the guideline has no card for character {character_id!r}") from None

    def prefetch(self, tasks: Iterable[AnnotationTask]) -> None:
        """Embed every text the tasks' scores need in one batched call (one encode per reply is slow)."""
        texts: dict[str, None] = {}
        for task in tasks:
            character = self._character(task.character_id)
            last_user = next((m.content for m in reversed(task.messages) if m.role == "user"), "")
            texts.update(dict.fromkeys([last_user or " ", character.persona if character else " ", *task.responses]))
        if texts:
            self.landscape.embed(list(texts))

    def score(self, messages: Sequence[Mapping[str, str]], reply: str, character_id: str | None) -> float:
        character = self._character(character_id)
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        key = (character_id or "", last_user, reply)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        texts = [reply, last_user or " ", character.persona if character else " "]
        vectors = self.landscape.embed(texts)
        relevance = float(vectors[0] @ vectors[1]) if last_user else 0.0
        persona = float(vectors[0] @ vectors[2]) if character else 0.15
        words = word_count(reply)
        length_penalty = 0.0 if 8 <= words <= 60 else min(abs(math.log2(max(words, 1) / (8 if words < 8 else 60))), 3)
        rules_broken = 0
        emoji_asked = 0
        if character is not None:
            results = check_reply(reply, character.instructions, last_user or None)
            rules_broken = sum(1 for ok in results.values() if ok is False)
            emoji_asked = max((int(i.params.get("n", 1)) for i in character.instructions if i.type == "use_emoji"),
                              default=0)
        value = (
            2.5 * (relevance - 0.3)
            + 1.5 * (persona - 0.15)
            - 0.8 * rules_broken
            - 1.5 * is_generic(reply)
            - 0.6 * length_penalty
            - 0.5 * min(flattery_count(reply), 2)
            - 0.1 * min(max(count_emoji(reply) - emoji_asked, 0), 3)
        )
        if len(self._cache) >= 100_000:
            self._cache.clear()
        self._cache[key] = value
        return value


class AnnotatorPool:
    """Annotators applying one guideline; every label is a pure function of (seed, task, annotator).

    Rating: round(3 + 1.2 score + bias + N(0, noise)), clipped to 1-5. Pairwise: the annotator sees
    margin = score(second) - score(first) + N(0, noise) and prefers the second response with
    probability sigmoid(margin / pairwise_temperature).
    """

    def __init__(self, guideline: Guideline, annotators: Sequence[Annotator], seed: int = 0) -> None:
        self.guideline = guideline
        self.annotators = list(annotators)
        if not self.annotators:
            raise ValueError("an AnnotatorPool needs at least one annotator")
        ids = [annotator.annotator_id for annotator in self.annotators]
        if len(set(ids)) != len(ids):
            raise ValueError(f"annotator ids must be unique, got {ids}")
        self.seed = seed

    def label(self, task: AnnotationTask, annotator: Annotator) -> Label:
        rng = stable_rng(self.seed, "label", task.task_id, annotator.annotator_id)
        history = [m.model_dump() for m in task.messages]
        scores = [self.guideline.score(history, r, task.character_id) for r in task.responses]
        if task.kind == "rating":
            value = 3.0 + 1.2 * scores[0] + annotator.bias + rng.normal(0, annotator.noise)
            return Label(rating=int(np.clip(round(value), 1, 5)))
        margin = (scores[1] - scores[0]) + rng.normal(0, annotator.noise)
        p_second = _sigmoid(margin / annotator.pairwise_temperature)
        return Label(preferred=int(rng.random() < p_second))

    def annotate(self, tasks: Iterable[AnnotationTask], per_task: int = 2) -> list[Annotation]:
        """Each task labelled by ``per_task`` annotators chosen deterministically per task
        (all of them when ``per_task`` >= the pool size); the task's extra fields are kept."""
        if per_task < 1:
            raise ValueError(f"per_task must be at least 1, got {per_task}")
        filled = []
        iterator = iter(tasks)
        while chunk := list(itertools.islice(iterator, 1024)):  # itertools.batched needs Python 3.12
            self.guideline.prefetch(chunk)
            filled.extend(self._annotate_chunk(chunk, per_task))
        return filled

    def _annotate_chunk(self, tasks: Sequence[AnnotationTask], per_task: int) -> list[Annotation]:
        filled = []
        for task in tasks:
            rng = stable_rng(self.seed, "assign", task.task_id)
            chosen = rng.choice(len(self.annotators), size=min(per_task, len(self.annotators)), replace=False)
            fields = task.model_dump(exclude={"annotator_id", "label"})
            for index in sorted(int(i) for i in chosen):
                annotator = self.annotators[index]
                filled.append(Annotation(**fields, annotator_id=annotator.annotator_id,
                                         label=self.label(task, annotator)))
        return filled


def agreement(annotations: Iterable[Annotation]) -> dict[str, float]:
    """Inter-annotator agreement per kind, over annotator pairs that labelled the same tasks.

    ``<kind>_percent_agreement``: share of (task, annotator pair) with identical labels;
    ``<kind>_overlap_items``: how many such pairs there were; ``<kind>_kappa``: Cohen's kappa per
    annotator pair (quadratic-weighted for ratings), averaged with weights = shared tasks, over pairs
    with at least 5 shared tasks. Kappa is left out when no pair qualifies; a pair whose kappa is
    undefined (both gave one and the same label throughout) is skipped.
    """
    by_task: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for a in annotations:
        value = a.label.preferred if a.kind == "pairwise" else a.label.rating
        if value is None:
            raise ValueError(f"task {a.task_id!r}, annotator {a.annotator_id!r}: no {a.kind} label")
        by_task[(a.kind, a.task_id)][a.annotator_id] = int(value)
    result: dict[str, float] = {}
    for kind, weights in (("pairwise", None), ("rating", "quadratic")):
        pairs: dict[tuple[str, str], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for (task_kind, _), labels in by_task.items():
            if task_kind != kind:
                continue
            for first, second in itertools.combinations(sorted(labels), 2):
                pairs[(first, second)][0].append(labels[first])
                pairs[(first, second)][1].append(labels[second])
        kappas, weights_n, agree, total = [], [], 0, 0
        for left, right in pairs.values():
            agree += sum(x == y for x, y in zip(left, right))
            total += len(left)
            if len(left) >= 5 and len(set(left) | set(right)) > 1:
                kappa = float(cohen_kappa_score(left, right, weights=weights))
                if math.isfinite(kappa):
                    kappas.append(kappa)
                    weights_n.append(len(left))
        if total:
            result[f"{kind}_percent_agreement"] = agree / total
            result[f"{kind}_overlap_items"] = float(total)
        if kappas:
            result[f"{kind}_kappa"] = float(np.average(kappas, weights=weights_n))
    return result
