"""Annotation: curated prompts -> tasks (pairwise and rating), filled, with agreement.

Tasks use ``characterflywheel.data.annotation`` (one JSON object per line). For each annotated
prompt the candidates are the logged reply plus the replies passed in ``candidates``
(``prompt_id -> [reply, ...]``, e.g. policy samples the caller generated with ``backend.chat``;
``generate_candidates`` does that for a backend). Per prompt:

* ``pairs_per_prompt`` pairwise tasks over distinct candidate pairs, the logged-vs-policy pair
  first, the two sides in seeded random order (position bias cancels out);
* ``ratings_per_prompt`` rating tasks, one candidate each (the logged reply first).

Task ids are ``<prompt_id>/pair-<i>`` and ``<prompt_id>/rate-<j>``; each task carries extra
top-level keys ``prompt_id`` and ``sources`` (``"logged"`` or ``"candidate-<k>"`` per response) so
that later stages can join labels back to prompts and replies.

Filling: ``annotate(tasks, filler)`` with any ``filler(tasks) -> annotations`` (the demo wires the
simulated annotator pool; a team wires its tool), or ``import_annotations(path, tasks)`` for a
file filled elsewhere. This module never imports the simulated world.

Agreement (``agreement_report``), over tasks labelled by 2+ annotators: Cohen's kappa on pairwise
labels and quadratic-weighted kappa on ratings (scikit-learn ``cohen_kappa_score``), computed on
all pairs of labels given to the same task (both orders, so the figure does not depend on which
annotator is called first; a pooled "any two raters" kappa, as with Fleiss' kappa), plus the raw
percent agreement and the number of label pairs.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from characterflywheel import artifacts
from characterflywheel.curate.records import read_prompt_records, write_json
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.data.annotation import Annotation, AnnotationTask, read_annotations, read_tasks
from characterflywheel.data.jsonl import write_jsonl

if TYPE_CHECKING:
    from characterflywheel.models import GenerationBackend, SamplingParams

TASKS_FILENAME = "tasks.jsonl"
AGREEMENT_FILENAME = "agreement.json"

Filler = Callable[[list[AnnotationTask]], list[Annotation]]


def _candidate_list(record: Mapping[str, Any], extra: Sequence[str]) -> list[tuple[str, str]]:
    """(source, reply) without duplicate texts, the logged reply first."""
    seen: set[str] = set()
    candidates = []
    for source, reply in [("logged", record["reply"]), *((f"candidate-{k}", r) for k, r in enumerate(extra))]:
        if reply.strip() and reply not in seen:
            seen.add(reply)
            candidates.append((source, reply))
    return candidates


def build_tasks(records: Sequence[Mapping[str, Any]], candidates: Mapping[str, Sequence[str]] | None,
                settings: CurateConfig, seed: int = 0) -> list[AnnotationTask]:
    """Pairwise and rating tasks for the first ``settings.annotation_prompts`` records."""
    rng = random.Random(seed)
    tasks = []
    for record in list(records)[: settings.annotation_prompts]:
        options = _candidate_list(record, (candidates or {}).get(record["prompt_id"], ()))
        base = {"character_id": record["character_id"], "messages": record["prompt"], "prompt_id": record["prompt_id"]}
        pairs = list(itertools.combinations(range(len(options)), 2))
        for index, (a, b) in enumerate(pairs[: settings.pairs_per_prompt]):
            if rng.random() < 0.5:
                a, b = b, a
            tasks.append(AnnotationTask(task_id=f"{record['prompt_id']}/pair-{index}", kind="pairwise",
                                        responses=[options[a][1], options[b][1]],
                                        sources=[options[a][0], options[b][0]], **base))
        for index, (source, reply) in enumerate(options[: settings.ratings_per_prompt]):
            tasks.append(AnnotationTask(task_id=f"{record['prompt_id']}/rate-{index}", kind="rating",
                                        responses=[reply], sources=[source], **base))
    return tasks


def generate_candidates(records: Sequence[Mapping[str, Any]], backend: GenerationBackend, params: SamplingParams,
                        progress: bool = False) -> dict[str, list[str]]:
    """``params.n`` policy replies per record (``backend.chat`` on each prompt)."""
    prompts = [[{"role": m["role"], "content": m["content"]} for m in record["prompt"]] for record in records]
    replies = backend.chat(prompts, params, progress=progress)
    return {record["prompt_id"]: list(reply) for record, reply in zip(records, replies)}


def _check_against_tasks(annotations: Iterable[Annotation], tasks: Sequence[AnnotationTask], where: str) -> list[Annotation]:
    known = {task.task_id: task.task_fields() for task in tasks}
    checked = []
    for number, annotation in enumerate(annotations, start=1):
        expected = known.get(annotation.task_id)
        if expected is None:
            raise ValueError(f"{where}: annotation {number}: task_id: {annotation.task_id!r} is not one of the tasks")
        differing = [key for key, value in annotation.task_fields().items() if expected[key] != value]
        if differing:
            raise ValueError(f"{where}: annotation {number}: {differing[0]}: differs from task {annotation.task_id!r}")
        checked.append(annotation)
    return checked


def annotate(tasks: Sequence[AnnotationTask], filler: Filler) -> list[Annotation]:
    """Fill ``tasks`` with ``filler``; every annotation must belong to a task, unchanged."""
    return _check_against_tasks(filler(list(tasks)), tasks, "filler")


def import_annotations(path: Path, tasks: Sequence[AnnotationTask] | None = None) -> list[Annotation]:
    """Annotations filled outside the flywheel (checked against ``tasks`` when given)."""
    annotations = list(read_annotations(path))
    return _check_against_tasks(annotations, tasks, str(path)) if tasks is not None else annotations


def _label(annotation: Annotation) -> int:
    value = annotation.label.preferred if annotation.kind == "pairwise" else annotation.label.rating
    assert value is not None  # Annotation validates that the label fits the kind
    return int(value)


def agreement_report(annotations: Iterable[Annotation]) -> dict[str, float]:
    """Pooled Cohen's kappa (pairwise), quadratic-weighted kappa (rating), percent agreement and
    label-pair counts, over tasks with 2+ annotators; a kappa is left out when undefined."""
    labels: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for annotation in annotations:
        labels[(annotation.kind, annotation.task_id)][annotation.annotator_id] = _label(annotation)
    result: dict[str, float] = {}
    for kind, weights in (("pairwise", None), ("rating", "quadratic")):
        first: list[int] = []
        second: list[int] = []
        tasks = 0
        for (task_kind, _), by_annotator in labels.items():
            if task_kind != kind or len(by_annotator) < 2:
                continue
            tasks += 1
            for a, b in itertools.combinations(sorted(by_annotator), 2):
                first += [by_annotator[a], by_annotator[b]]
                second += [by_annotator[b], by_annotator[a]]
        result[f"{kind}_tasks_multi"] = float(tasks)
        if not first:
            continue
        result[f"{kind}_label_pairs"] = float(len(first) // 2)
        result[f"{kind}_percent_agreement"] = float(np.mean(np.array(first) == np.array(second)))
        if len(set(first)) > 1:
            kappa = float(cohen_kappa_score(first, second, weights=weights))
            if np.isfinite(kappa):
                result[f"{kind}_kappa"] = kappa
    return result


@dataclass
class AnnotateReport:
    prompts: int = 0
    tasks: int = 0
    tasks_by_kind: dict[str, int] = field(default_factory=dict)
    annotations: int = 0
    annotators: int = 0
    agreement: dict[str, float] = field(default_factory=dict)
    filled: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_annotate(input_path: Path, out_dir: Path, settings: CurateConfig, *,
                 candidates: Mapping[str, Sequence[str]] | None = None, filler: Filler | None = None,
                 annotations_path: Path | None = None, seed: int = 0) -> AnnotateReport:
    """``stratified.jsonl`` -> ``tasks.jsonl`` and, when filled (``filler`` or ``annotations_path``),
    ``annotations.jsonl`` + ``agreement.json`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = list(read_prompt_records(input_path))
    tasks = build_tasks(records, candidates, settings, seed)
    write_jsonl(out_dir / TASKS_FILENAME, tasks)
    report = AnnotateReport(prompts=min(len(records), settings.annotation_prompts), tasks=len(tasks))
    for task in tasks:
        report.tasks_by_kind[task.kind] = report.tasks_by_kind.get(task.kind, 0) + 1
    annotations: list[Annotation] | None = None
    if annotations_path is not None:
        annotations = import_annotations(annotations_path, tasks)
    elif filler is not None:
        annotations = annotate(tasks, filler)
    if annotations is not None:
        write_jsonl(out_dir / artifacts.ANNOTATIONS, annotations)
        report.filled = True
        report.annotations = len(annotations)
        report.annotators = len({a.annotator_id for a in annotations})
        report.agreement = agreement_report(annotations)
    write_json(out_dir / AGREEMENT_FILENAME, report.to_json())
    return report


def read_task_file(path: Path) -> list[AnnotationTask]:
    """Tasks written by ``run_annotate`` (for an external tool to fill)."""
    return list(read_tasks(path))
