"""The annotation task / annotation JSONL format: round trips, kind rules, one-line errors, extras."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from characterflywheel.data.annotation import (
    Annotation,
    AnnotationTask,
    Label,
    read_annotations,
    read_tasks,
)
from characterflywheel.data.jsonl import write_jsonl

HISTORY = [{"role": "system", "content": "You are Captain Saltbeard."}, {"role": "user", "content": "hey 👋"}]


def pairwise_task(task_id: str = "t-1", **changes: Any) -> dict[str, Any]:
    return {"task_id": task_id, "kind": "pairwise", "character_id": "captain-saltbeard", "messages": HISTORY,
            "responses": ["Ahoy! Yo ho ho!", "Hello."], **changes}


def rating_task(task_id: str = "t-2", **changes: Any) -> dict[str, Any]:
    return {"task_id": task_id, "kind": "rating", "messages": HISTORY[1:], "responses": ["Ahoy, matey ⚓"], **changes}


def write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_tasks_round_trip(tmp_path: Path) -> None:
    tasks = [AnnotationTask.model_validate(pairwise_task()), AnnotationTask.model_validate(rating_task())]
    path = tmp_path / "tasks.jsonl"
    assert write_jsonl(path, tasks) == 2
    assert list(read_tasks(path)) == tasks
    assert list(read_tasks(str(path))) == tasks  # str paths work too
    assert [p.name for p in tmp_path.iterdir()] == ["tasks.jsonl"]  # no temp file left behind


@pytest.mark.parametrize(
    "record",
    [pairwise_task(responses=["only one"]), pairwise_task(responses=["a", "b", "c"]),
     rating_task(responses=["a", "b"]), rating_task(responses=[])],
    ids=["pairwise-1", "pairwise-3", "rating-2", "rating-0"],
)
def test_responses_must_fit_the_kind(tmp_path: Path, record: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AnnotationTask.model_validate(record)
    path = write_lines(tmp_path / "tasks.jsonl", [pairwise_task("ok"), record])
    with pytest.raises(ValueError, match=r"tasks\.jsonl:2: responses: "):
        list(read_tasks(path))


def test_filled_annotations_read_back_with_labels_by_kind(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "filled.jsonl", [
        {**pairwise_task(), "annotator_id": "ann-0", "label": {"preferred": 1}},
        "",  # blank lines are skipped
        {**pairwise_task(), "annotator_id": "ann-1", "label": {"preferred": 0}},
        {**rating_task(), "annotator_id": "ann-0", "label": {"rating": 5}},
    ])
    annotations = list(read_annotations(path))
    assert [(a.kind, a.annotator_id, a.label) for a in annotations] == [
        ("pairwise", "ann-0", Label(preferred=1)),
        ("pairwise", "ann-1", Label(preferred=0)),
        ("rating", "ann-0", Label(rating=5)),
    ]
    # a label holds only its kind's key on the way out
    assert json.loads(annotations[2].model_dump_json())["label"] == {"rating": 5}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"label": {"rating": 4}}, "label"),                       # pairwise needs preferred
        ({"label": {"preferred": 1, "rating": 4}}, "label"),       # never both
        ({"label": {"preferred": 2}}, "label.preferred"),
        ({"label": {"preferred": True}}, "label.preferred"),       # not a bool
        ({"label": {"preferred": "1"}}, "label.preferred"),        # not a string
        ({"label": {"prefered": 1}}, "label.prefered"),            # typo inside label is an error
        ({"label": None}, "label"),
        ({"annotator_id": ""}, "annotator_id"),
        ({"kind": "ranking"}, "kind"),
        ({"messages": [{"role": "narrator", "content": "hi"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"task_id": 7}, "task_id"),
    ],
)
def test_bad_pairwise_line_is_a_one_line_error_naming_file_line_and_field(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    good = {**pairwise_task(), "annotator_id": "ann-0", "label": {"preferred": 0}}
    path = write_lines(tmp_path / "filled.jsonl", [good, {**good, "annotator_id": "ann-1", **changes}])
    with pytest.raises(ValueError) as caught:
        list(read_annotations(path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:2: {field}: "), message


@pytest.mark.parametrize(
    ("label", "field"),
    [({"preferred": 0}, "label"), ({"rating": 0}, "label.rating"), ({"rating": 6}, "label.rating"),
     ({"rating": 3.0}, "label.rating"), ({"rating": "3"}, "label.rating"), ({}, "label")],
)
def test_bad_rating_label(tmp_path: Path, label: dict[str, Any], field: str) -> None:
    path = write_lines(tmp_path / "filled.jsonl", [{**rating_task(), "annotator_id": "ann-0", "label": label}])
    with pytest.raises(ValueError, match=rf"^{path}:1: {field}: [^\n]+$"):
        list(read_annotations(path))


@pytest.mark.parametrize(
    "line",
    [b'{"task_id": "t-1", "kind": ', b"[1, 2]", b'{"task_id": NaN}', b'{"task_id": "caf\xe9"}'],
    ids=["truncated", "array", "nan", "latin1"],
)
def test_unparseable_lines_name_file_and_line(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "filled.jsonl"
    path.write_bytes(json.dumps({**rating_task(), "annotator_id": "a", "label": {"rating": 3}}).encode() + b"\n"
                     + line + b"\n")
    for reader in (read_annotations, read_tasks):
        with pytest.raises(ValueError, match=rf"^{path}:2: <record>: [^\n]+$"):
            list(reader(path))


def test_extra_fields_are_kept_through_read_and_write(tmp_path: Path) -> None:
    record = {**pairwise_task(), "annotator_id": "ann-0", "label": {"preferred": 1},
              "comment": "second one is flat", "time_spent_s": 12.5, "tool": {"name": "argilla", "v": 2}}
    source = write_lines(tmp_path / "in.jsonl", [record])
    annotations = list(read_annotations(source))
    assert annotations[0].model_extra == {"comment": "second one is flat", "time_spent_s": 12.5,
                                          "tool": {"name": "argilla", "v": 2}}
    copy = tmp_path / "out.jsonl"
    write_jsonl(copy, annotations)
    assert json.loads(copy.read_text(encoding="utf-8")) == record
    assert list(read_annotations(copy)) == annotations
    # a filled file still reads as tasks (the annotation keys ride along as extras)
    assert list(read_tasks(copy))[0].task_fields() == AnnotationTask.model_validate(pairwise_task()).task_fields()


def test_repeats_and_conflicts_are_rejected(tmp_path: Path) -> None:
    tasks = write_lines(tmp_path / "tasks.jsonl", [pairwise_task("t-1"), rating_task("t-2"), rating_task("t-1")])
    with pytest.raises(ValueError, match=r"tasks\.jsonl:3: task_id: 't-1' repeats line 1"):
        list(read_tasks(tasks))

    first = {**pairwise_task(), "annotator_id": "ann-0", "label": {"preferred": 1}}
    twice = write_lines(tmp_path / "twice.jsonl", [first, {**first, "label": {"preferred": 0}}])
    with pytest.raises(ValueError, match=r"twice\.jsonl:2: annotator_id: 'ann-0' already labelled task 't-1'"):
        list(read_annotations(twice))

    changed = {**first, "annotator_id": "ann-1", "responses": ["Ahoy! Yo ho ho!", "Goodbye."]}
    conflict = write_lines(tmp_path / "conflict.jsonl", [first, changed])
    with pytest.raises(ValueError, match=r"conflict\.jsonl:2: responses: task 't-1' differs from line 1"):
        list(read_annotations(conflict))


def test_write_is_atomic_when_records_fail_midway(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    write_jsonl(path, [AnnotationTask.model_validate(pairwise_task())])
    before = path.read_bytes()

    def records():
        yield AnnotationTask.model_validate(rating_task())
        raise RuntimeError("generator broke")

    with pytest.raises(RuntimeError):
        write_jsonl(path, records())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tasks.jsonl"]


def test_annotation_constructed_in_code_validates_too() -> None:
    with pytest.raises(ValidationError):
        Annotation(**pairwise_task(), annotator_id="ann-0", label=Label(rating=3))
    annotation = Annotation(**rating_task(), annotator_id="ann-0", label=Label(rating=3))
    assert annotation.label.preferred is None
