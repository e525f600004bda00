"""Annotation tasks as JSONL: written by the flywheel, filled by people, a tool, or the simulation.

One task per line going out::

    {"task_id": "t-1", "kind": "pairwise", "character_id": "pirate-ann",
     "messages": [{"role": "user", "content": "hey"}], "responses": ["Arr!", "Hello."]}

``kind`` is ``pairwise`` (exactly two responses: which is better) or ``rating`` (exactly one
response: 1-5). One *annotation* per line coming back: the task's fields plus ``annotator_id`` and
``label`` -- ``{"preferred": 0|1}`` (the index of the better response; no ties) for a pairwise task,
``{"rating": 1..5}`` for a rating task, never both. Several annotators may label one task. The same
shape maps onto an Argilla dataset (text fields, a rating or ranking question), so a team can swap
the simulated annotators for real ones without touching the stages.

Rules the readers enforce (decisions, so a team's tool knows what comes back in):

* Unknown *top-level* keys are kept (a tool may add ``comment``, ``time_spent_s`` ...) and written
  back out by ``write_jsonl``; keys inside ``messages`` items and inside ``label`` are closed (a
  typo such as ``"prefered"`` is an error, not a silently missing label).
* Label values are strict integers: ``true``, ``"1"`` or ``3.0`` are rejected.
* In a tasks file a ``task_id`` appears once. In an annotations file one annotator labels a task
  once, and every line with the same ``task_id`` carries the same task (kind, character, messages,
  responses).
* Any bad line is a ``ValueError`` with a one-line message ``<file>:<line>: <field>: <problem>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)


__all__ = ["Annotation", "AnnotationTask", "ChatTurn", "Label", "LineError", "parse_line", "read_annotations", "read_tasks"]

_EXPECTED_RESPONSES = {"pairwise": 2, "rating": 1}


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class AnnotationTask(BaseModel):
    model_config = ConfigDict(extra="allow")
    task_id: str = Field(min_length=1)
    kind: Literal["pairwise", "rating"]
    character_id: str | None = None
    messages: list[ChatTurn] = Field(min_length=1)
    responses: list[str] = Field(min_length=1, max_length=2)

    @field_validator("responses")
    @classmethod
    def _responses_fit_kind(cls, responses: list[str], info: ValidationInfo) -> list[str]:
        kind = info.data.get("kind")  # absent when kind itself was invalid (reported on its own)
        expected = _EXPECTED_RESPONSES.get(kind) if isinstance(kind, str) else None
        if expected is not None and len(responses) != expected:
            raise ValueError(f"a {kind} task needs exactly {expected} response(s), got {len(responses)}")
        return responses

    def task_fields(self) -> dict[str, Any]:
        """The task as the flywheel wrote it: declared fields only (no annotator, label or extras)."""
        return self.model_dump(include={"task_id", "kind", "character_id", "messages", "responses"})


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")
    preferred: Annotated[StrictInt, Field(ge=0, le=1)] | None = None
    rating: Annotated[StrictInt, Field(ge=1, le=5)] | None = None

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class Annotation(AnnotationTask):
    annotator_id: str = Field(min_length=1)
    label: Label

    @field_validator("label")
    @classmethod
    def _label_fits_kind(cls, label: Label, info: ValidationInfo) -> Label:
        kind = info.data.get("kind")
        if kind == "pairwise":
            if label.preferred is None:
                raise ValueError("a pairwise task needs label.preferred (0 or 1)")
            if label.rating is not None:
                raise ValueError("a pairwise task takes label.preferred only, not label.rating")
        elif kind == "rating":
            if label.rating is None:
                raise ValueError("a rating task needs label.rating (1-5)")
            if label.preferred is not None:
                raise ValueError("a rating task takes label.rating only, not label.preferred")
        return label


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "<record>"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class LineError(ValueError):
    """One line that is not a valid record: the ``field`` at fault and the ``problem``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


_Model = TypeVar("_Model", bound=AnnotationTask)


def parse_line(raw: bytes, model: type[_Model]) -> _Model:
    """One JSONL line as ``model`` (a task or an annotation); a ``LineError`` names the field at fault.
    A leading byte-order mark (spreadsheet tools write one) is ignored."""
    try:
        line = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise LineError("<record>", "not UTF-8 text") from None
    try:
        data = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise LineError("<record>", f"not valid JSON: {error.msg} (column {error.colno})") from None
    except ValueError as error:  # NaN / Infinity
        raise LineError("<record>", str(error)) from None
    if not isinstance(data, dict):
        raise LineError("<record>", "not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = error.errors()
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        problem = " ".join(f"{str(errors[0]['msg']).removeprefix('Value error, ')}{more}".split())
        raise LineError(_field_name(tuple(errors[0]["loc"])), problem) from None


def _read(path: Path | str, model: type[_Model]) -> Iterator[tuple[int, _Model]]:
    path = Path(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, parse_line(raw, model)
            except LineError as error:
                raise ValueError(f"{path}:{number}: {error}") from None


def read_tasks(path: Path | str) -> Iterator[AnnotationTask]:
    """Tasks, one per line; a bad line or a repeated ``task_id`` is a one-line ValueError."""
    first_seen: dict[str, int] = {}
    for number, task in _read(path, AnnotationTask):
        if task.task_id in first_seen:
            raise ValueError(f"{path}:{number}: task_id: {task.task_id!r} repeats line {first_seen[task.task_id]}")
        first_seen[task.task_id] = number
        yield task


def read_annotations(path: Path | str) -> Iterator[Annotation]:
    """Filled tasks; a bad line is a one-line error naming the file, line and field."""
    tasks: dict[str, tuple[int, dict[str, Any]]] = {}
    labelled: dict[tuple[str, str], int] = {}
    for number, annotation in _read(path, Annotation):
        fields = annotation.task_fields()
        if annotation.task_id in tasks:
            first_line, first = tasks[annotation.task_id]
            differing = [key for key in fields if fields[key] != first[key]]
            if differing:
                raise ValueError(
                    f"{path}:{number}: {differing[0]}: task {annotation.task_id!r} differs from line {first_line}"
                )
        else:
            tasks[annotation.task_id] = (number, fields)
        key = (annotation.task_id, annotation.annotator_id)
        if key in labelled:
            raise ValueError(
                f"{path}:{number}: annotator_id: {annotation.annotator_id!r} already labelled task "
                f"{annotation.task_id!r} on line {labelled[key]}"
            )
        labelled[key] = number
        yield annotation
