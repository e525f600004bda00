"""Training examples for the reward models, and the held-out split.

* Annotations (``characterflywheel.data.annotation``) give rating examples (history, reply, 1-5)
  and preference examples (history, preferred reply, other reply). Every annotation is one example:
  several annotators on one task give several (possibly disagreeing) examples, which is the label
  noise the models should learn to be calibrated about.
* Traffic prompt records (the contract's "prompts") give user-signal examples (history, logged
  reply, continued, thumbs up); a null label is kept as "unknown" and masked out of its head's loss.

Held-out split: by prompt. A task's group is its ``prompt_id`` extra field when the task carries
one, else a hash of its messages (every task built on one prompt shares its messages); traffic rows
are grouped by ``conversation_id`` (prompts of one conversation share their history). Groups are
ordered by a keyed hash and the first ``ceil(share * groups)`` are held out (at least one, and at
least one group is left for training), so the split is deterministic and stable across runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from characterflywheel.data.annotation import Annotation, read_annotations
from characterflywheel.data.jsonl import iter_jsonl
from characterflywheel.reward.inputs import check_prompt


@dataclass(frozen=True)
class RatingExample:
    group: str
    prompt: list[dict[str, str]]
    reply: str
    rating: int


@dataclass(frozen=True)
class PreferenceExample:
    group: str
    prompt: list[dict[str, str]]
    first: str
    second: str
    first_better: bool


@dataclass(frozen=True)
class SignalExample:
    group: str
    prompt: list[dict[str, str]]
    reply: str
    continued: bool | None
    thumbs_up: bool | None


@dataclass(frozen=True)
class AnnotationExamples:
    ratings: list[RatingExample]
    preferences: list[PreferenceExample]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def annotation_group(annotation: Annotation) -> str:
    prompt_id = (annotation.model_extra or {}).get("prompt_id")
    if isinstance(prompt_id, str) and prompt_id:
        return prompt_id
    return "messages-" + _digest(json.dumps([m.model_dump() for m in annotation.messages], sort_keys=True))


def load_annotation_examples(path: Path | str) -> AnnotationExamples:
    """Rating and preference examples from an annotations file (bad lines: the reader's one-line errors)."""
    ratings: list[RatingExample] = []
    preferences: list[PreferenceExample] = []
    for annotation in read_annotations(path):
        group = annotation_group(annotation)
        prompt = [m.model_dump() for m in annotation.messages]
        if annotation.kind == "rating":
            assert annotation.label.rating is not None  # enforced by the reader
            ratings.append(RatingExample(group, prompt, annotation.responses[0], annotation.label.rating))
        else:
            preferences.append(PreferenceExample(group, prompt, annotation.responses[0], annotation.responses[1],
                                                 annotation.label.preferred == 0))
    return AnnotationExamples(ratings, preferences)


_THUMBS = {"up": True, "down": False, None: None}


def signal_example(record: dict[str, Any], where: str) -> SignalExample:
    prompt = check_prompt(record.get("prompt"), where)
    reply = record.get("reply")
    if not isinstance(reply, str):
        raise ValueError(f"{where}: reply: expected a string")
    continued = record.get("continued")
    if continued is not None and not isinstance(continued, bool):
        raise ValueError(f"{where}: continued: expected true, false or null, got {continued!r}")
    thumbs = record.get("thumbs")
    if thumbs not in _THUMBS:
        raise ValueError(f"{where}: thumbs: expected 'up', 'down' or null, got {thumbs!r}")
    group = record.get("conversation_id") or record.get("prompt_id")
    if not isinstance(group, str) or not group:
        raise ValueError(f"{where}: conversation_id: expected a non-empty string (or a prompt_id)")
    return SignalExample(group, prompt, reply, continued, _THUMBS[thumbs])


def load_signal_examples(path: Path | str, limit: int | None = None) -> list[SignalExample]:
    """User-signal examples from a prompts JSONL; rows with neither label are skipped."""
    examples: list[SignalExample] = []
    for number, record in iter_jsonl(path):
        example = signal_example(record, f"{path}:{number}")
        if example.continued is None and example.thumbs_up is None:
            continue
        examples.append(example)
        if limit is not None and len(examples) >= limit:
            break
    return examples


def heldout_groups(groups: Iterable[str], share: float, seed: int) -> set[str]:
    unique = sorted(set(groups), key=lambda g: (_digest(f"{seed}|{g}"), g))
    if len(unique) < 2:
        return set()
    count = min(max(math.ceil(share * len(unique)), 1), len(unique) - 1)
    return set(unique[:count])


_Example = TypeVar("_Example", RatingExample, PreferenceExample, SignalExample)


def split(examples: Sequence[_Example], heldout: set[str]) -> tuple[list[_Example], list[_Example]]:
    """(train, held-out) by group."""
    train = [e for e in examples if e.group not in heldout]
    held = [e for e in examples if e.group in heldout]
    return train, held
