"""The flywheel's world in production: the team's own annotators and users, through a people folder.

``ProductionEnvironment`` is the ``Environment`` (see ``flywheel.py``) a team runs the loop with, beside
the demo's ``SimulatedEnvironment``. Work that waits on people is left as files in a folder, one
sub-folder per generation and stage (``environment.people_dir``, default ``<run directory>/people``)::

    people/gen-<N>/annotate/annotation_tasks.jsonl        written: tasks to label (curated prompts)
    people/gen-<N>/annotate/annotation_key.jsonl          written: the same tasks with each response's
                                                          source ("logged", "candidate-k"): not for annotators
    people/gen-<N>/annotate/annotations.jsonl             filled by the team: the labels
    people/gen-<N>/annotate/annotations.quarantine.jsonl  written: rows that could not be used, with why
    people/gen-<N>/annotate/annotations.report.json       written: read = accepted + quarantined
    people/gen-<N>/evaluate/...                           the same for the child-vs-parent judgement
    people/gen-<N>/deploy/arms.json                       written: the A/B arms to serve
    people/gen-<N>/deploy/traffic/                        filled by the team: the window's log

When what a stage needs is not there yet the stage raises ``WaitingForPeople`` (the CLI prints its
message and exits with code 3); the stage leaves no manifest, so re-running the same command redoes
it, finds the file and goes on. Nothing waits in a loop: a run is a batch job a team (or its
scheduler) starts again once the people are done.

Annotations: the tasks are exported in the ``characterflywheel.data.annotation`` format (one task a
line, Argilla-compatible); the team returns one line per label, the task's line plus
``annotator_id`` and ``label``. The rows are read one by one: a row that is not valid JSON, fails
the format, names a task that was not exported, changes a task's fields, carries a label of the
wrong kind or repeats an annotator's label of a task goes to the quarantine file with a one-line
reason ``<file>:<line>: <field>: <problem>``; the good rows go on. Why not stop at the first bad
row, as the strict readers do: people's files have a few slips, and a team should not lose a day
of labels to one typo. Why not drop them silently: every row is accounted for (the report's
counts reconcile) and the quarantine keeps the row as written. A file with no usable row is an
error, not an empty generation.

Re-runs export the same tasks: task ids are ``<prompt_id>/pair-<i>`` and ``<prompt_id>/rate-<j>``
from the curated prompts, and the candidate replies are sampled with the run's seed, so a re-run on
the same machine and settings rebuilds them exactly. The exported file is never rewritten: the
labels are imported against it, and if a re-run built different tasks (a changed backend, dtype or
seed) that is a ``PeopleFolderError`` naming the first difference rather than labels silently
attached to replies the annotators never saw.

Traffic: the deploy stage's arms go to ``arms.json``; the team serves them (``characterflywheel
serve`` prints the exact command, or its own stack logging in the traffic schema with each
conversation's ``arm`` and ``model_version``) and puts the window's log in ``traffic/``: JSONL,
gzipped JSONL or Parquet parts (names not starting with ``.`` or ``_``, so a part being copied in
under a temporary name is not read half-written). The gateway's raw ``events.jsonl`` is not a part:
the gateway folds it into ``traffic.jsonl`` when it stops. The parts are copied line by line into
the stage's ``traffic.jsonl`` (Parquet rows rendered as JSON lines), which the deploy stage ingests
with quarantine as for any traffic; ``traffic_parts.json`` maps its line ranges back to the parts.

Generation 0 serves the base model alone (no challenger, so no A/B read-out); its window feeds
generation 1's curation and the CUPED pre-period of generation 1's window. A team that configures
its logged traffic (``data.traffic``) already has that window: the traffic of the model it serves
today. With ``environment.generation0_window = "data_traffic"`` (the default) those files stand for
generation 0's window and nothing waits; a log put in ``people/gen-0/deploy/traffic/`` wins over
them; ``"serve"`` always waits for a served window.

Who labels (``environment.annotators``): ``people`` as above; ``llm_judge``: the LLM judge of the
``[llm_judge]`` section (``curate.llm_judge``: both orders of every pair, a label only when they
agree) labels the exported tasks at once and nothing waits; ``both``: the judge labels them at once,
the run still waits for people, then takes both their labels and adds the judge's agreement with
people to ``annotations.report.json``. The judge's labels are kept beside the tasks::

    people/gen-<N>/annotate/llm_judge.annotations.jsonl   written: the judge's labels
    people/gen-<N>/annotate/llm_judge.report.json         written: its counts, model and rubric digest

and a re-run (still waiting for people, or resuming) reads them back instead of asking again, unless
the judge's model or rubric changed. A judge server that fails stops the run with one line naming
its base_url (a ``ConfigError``: the fix is the section or the server).

No hidden world: ``truth`` is None and there are no ``truth_prompts``; the report shows what
production can measure. This module never imports the simulated world or the demo wiring.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.config import ArmConfig, Config, ConfigError
from characterflywheel.curate.llm_judge import JudgeEndpointError, LLMJudge, judge_agreement
from characterflywheel.data.annotation import (
    Annotation,
    AnnotationTask,
    LineError,
    parse_line,
    read_annotations,
    read_tasks,
)
from characterflywheel.data.jsonl import write_json, write_jsonl

__all__ = ["ProductionEnvironment", "WaitingForPeople", "PeopleFolderError", "AnnotationImport",
           "WAITING_EXIT_CODE"]

log = logging.getLogger(__name__)

WAITING_EXIT_CODE = 3  # `characterflywheel run` exits with it while people have work to do

HIDDEN_FROM_ANNOTATORS = ("sources",)  # which response was served ("logged") would bias the label
QUARANTINE_FILE = "annotations.quarantine.jsonl"
IMPORT_REPORT_FILE = "annotations.report.json"
JUDGE_FILE = "llm_judge.annotations.jsonl"
JUDGE_REPORT_FILE = "llm_judge.report.json"
ARMS_FILE = "arms.json"
TRAFFIC_DIR = "traffic"
TRAFFIC_PARTS_FILE = "traffic_parts.json"
PART_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
SHOWN_QUARANTINED = 10  # bad rows reported one a line; the rest are counted (all are in the file)


class WaitingForPeople(Exception):
    """A stage needs work people have not returned yet; the message says what, where, and how to resume.
    Not an error: re-running the same command once the file is there goes on from this stage."""

    def __init__(self, message: str, *, generation: int | None, waiting_for: str, path: Path,
                 resume_command: str) -> None:
        super().__init__(message)
        self.generation = generation
        self.waiting_for = waiting_for
        self.path = path
        self.resume_command = resume_command


class PeopleFolderError(ValueError):
    """A file in the people folder that cannot be used as it is (one line naming file, line and field)."""


@dataclass
class QuarantinedRow:
    """An annotation row that could not be used, kept as written with the reason."""

    file: str
    line: int
    field: str
    reason: str
    raw: str

    def message(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


@dataclass
class AnnotationImport:
    """Counts of one import of a filled annotations file: ``read == accepted + quarantined``."""

    file: str
    tasks_exported: int
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    blank_lines: int = 0
    annotators: int = 0
    tasks_labelled: int = 0
    quarantined_by_field: dict[str, int] = field(default_factory=dict)
    llm_judge_agreement: dict[str, float] = field(default_factory=dict)  # environment.annotators = both

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- reading filled annotations


def _parse_row(raw: bytes) -> tuple[Annotation | None, str, str]:
    """(annotation, "", "") or (None, field, problem) for one line of a filled file."""
    try:
        return parse_line(raw, Annotation), "", ""
    except LineError as error:
        return None, error.field, error.problem


def import_filled_annotations(path: Path, exported: Sequence[AnnotationTask],
                              quarantine: Path) -> tuple[list[Annotation], AnnotationImport, list[QuarantinedRow]]:
    """Good rows of a filled file (checked against the ``exported`` tasks), the counts, and the bad rows,
    which are written to ``quarantine`` (the file is rewritten on every import, empty when all rows
    are good, so it always describes the file as it is now)."""
    tasks = {task.task_id: task for task in exported}
    report = AnnotationImport(file=str(path), tasks_exported=len(tasks))
    accepted: list[Annotation] = []
    rejected: list[QuarantinedRow] = []
    labelled: dict[tuple[str, str], int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                report.blank_lines += 1
                continue
            report.read += 1
            annotation, where, problem = _parse_row(raw.rstrip(b"\r\n"))
            if annotation is not None:
                where, problem = _check_row(annotation, tasks, labelled)
            if problem:
                rejected.append(QuarantinedRow(str(path), number, where, problem,
                                               raw.rstrip(b"\r\n").decode("utf-8", errors="replace")))
                continue
            assert annotation is not None
            labelled[(annotation.task_id, annotation.annotator_id)] = number
            accepted.append(_with_task_extras(annotation, tasks[annotation.task_id]))
    write_jsonl(quarantine, (asdict(row) for row in rejected))
    report.accepted, report.quarantined = len(accepted), len(rejected)
    report.annotators = len({a.annotator_id for a in accepted})
    report.tasks_labelled = len({a.task_id for a in accepted})
    for row in rejected:
        report.quarantined_by_field[row.field] = report.quarantined_by_field.get(row.field, 0) + 1
    return accepted, report, rejected


def _check_row(annotation: Annotation, tasks: dict[str, AnnotationTask],
               labelled: dict[tuple[str, str], int]) -> tuple[str, str]:
    """("", "") for a row that belongs to an exported task, unchanged, labelled once by its annotator."""
    task = tasks.get(annotation.task_id)
    if task is None:
        return "task_id", f"{annotation.task_id!r} is not one of the exported tasks"
    expected = task.task_fields()
    for key, value in annotation.task_fields().items():
        if value != expected[key]:
            return key, f"differs from exported task {annotation.task_id!r} (labels must keep the task as exported)"
    earlier = labelled.get((annotation.task_id, annotation.annotator_id))
    if earlier is not None:
        return "annotator_id", (f"{annotation.annotator_id!r} already labelled task {annotation.task_id!r} "
                                f"on line {earlier}")
    return "", ""


def blinded(task: AnnotationTask) -> AnnotationTask:
    """The task as annotators see it: without the keys that say which response is which
    (``HIDDEN_FROM_ANNOTATORS``); the import restores them from the key file."""
    return AnnotationTask.model_validate({key: value for key, value in task.model_dump(mode="json").items()
                                         if key not in HIDDEN_FROM_ANNOTATORS})


def _with_task_extras(annotation: Annotation, task: AnnotationTask) -> Annotation:
    """The annotation with the exported task's extra keys (``prompt_id``, ``sources``) a tool may have
    dropped: the reward stage groups its held-out split by ``prompt_id``."""
    missing = {key: value for key, value in (task.model_extra or {}).items()
               if key not in (annotation.model_extra or {})}
    if not missing:
        return annotation
    return Annotation.model_validate(annotation.model_dump(mode="json") | missing)


def _first_task_difference(exported: Sequence[AnnotationTask], rebuilt: Sequence[AnnotationTask]) -> str | None:
    """``<line>: <field>: <problem>`` for the first exported task this run did not rebuild identically."""
    for number, (old, new) in enumerate(zip(exported, rebuilt), start=1):
        before, now = old.model_dump(mode="json"), new.model_dump(mode="json")
        for key in sorted(set(before) | set(now)):
            if before.get(key) != now.get(key):
                return f"{number}: {key}: task {old.task_id!r} differs from the one this run rebuilt"
    if len(exported) != len(rebuilt):
        line = min(len(exported), len(rebuilt)) + 1
        return f"{line}: <record>: {len(exported)} tasks exported, {len(rebuilt)} rebuilt"
    return None


# --------------------------------------------------------------------------- traffic parts


def traffic_parts(folder: Path) -> list[Path]:
    """The window's log files in ``folder`` (recursively), in name order; see the module docstring."""
    if not folder.is_dir():
        return [folder] if folder.is_file() else []
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and path.name.lower().endswith(PART_SUFFIXES)
                  and not path.name.startswith((".", "_")) and path.name != artifacts.EVENTS)


def _part_format(path: Path) -> str:
    """From the magic bytes, as ingest decides (not from the name)."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    return "parquet" if magic == b"PAR1" else "jsonl.gz" if magic[:2] == b"\x1f\x8b" else "jsonl"


def _part_lines(path: Path) -> Iterator[bytes]:
    """A part's lines as bytes with their newline. JSONL lines are copied as written, so that a bad
    line reaches ingest (and its quarantine) unchanged; Parquet rows (the ingest output layout) are
    rendered as JSON lines."""
    kind = _part_format(path)
    if kind == "parquet":
        from characterflywheel.data.parquet import iter_parquet_rows, row_to_record

        for row in iter_parquet_rows(path):
            try:
                record = row_to_record(row)
            except json.JSONDecodeError:  # a bad metadata column: ingest quarantines the row as it is
                record = row
            yield (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        return
    opened = gzip.open(path, "rb") if kind == "jsonl.gz" else path.open("rb")
    with opened as handle:
        for line in handle:
            yield line if line.endswith(b"\n") else line + b"\n"


def copy_traffic(parts: Sequence[Path], out_path: Path) -> list[dict[str, Any]]:
    """Every part's lines into ``out_path``; per part its path, format and the lines it fills there."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mapping = []
    written = 0
    with out_path.open("wb") as out:
        for part in parts:
            first = written + 1
            try:
                for line in _part_lines(part):
                    out.write(line)
                    written += 1
            except (OSError, EOFError, ValueError) as error:  # a truncated gzip, a corrupt Parquet file
                raise PeopleFolderError(f"{part}: <file>: cannot be read to the end ({error}); "
                                        f"replace the part and re-run") from None
            mapping.append({"part": str(part), "format": _part_format(part),
                            "lines": written - first + 1, "first_line": first, "last_line": written})
    return mapping


def toml_inline(value: Any) -> str:
    """A TOML literal for ``--set`` (inline tables, so the value fits on a command line)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml_inline(inner)}" for key, inner in value.items()
                               if inner is not None) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_inline(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string takes JSON's escapes


# --------------------------------------------------------------------------- the environment


class ProductionEnvironment:
    """The team's annotators and users, reached through the people folder (see the module docstring).

    ``config_args``: the command-line options that chose the config (``--config``, ``--preset``,
    ``--set``), repeated in the commands the messages print. ``resume_command``: the command to
    re-run (default ``characterflywheel run`` with ``config_args``). ``say``: where one-line
    notices go (bad rows, counts); default the ``logging`` module."""

    simulated = False

    def __init__(self, config: Config, config_args: Sequence[str] = (), resume_command: str | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.config_args = list(config_args)
        self.resume_command = resume_command or shlex.join(["characterflywheel", "run", *self.config_args])
        self.say = say or log.warning
        self.people_dir = Path(config.environment.people_dir) if config.environment.people_dir \
            else config.run_dir() / "people"
        self.stage: tuple[int, str] | None = None
        self.imports: list[AnnotationImport] = []
        judge = config.llm_judge
        if config.environment.annotators != "people" and not (judge.base_url and judge.model):
            # Checked here, when `run` starts, not when the first tasks are built hours in.
            raise ConfigError(f"llm_judge.{'model' if judge.base_url else 'base_url'}: empty, but "
                              f"environment.annotators = {config.environment.annotators} asks the LLM judge")

    # The loop tells the environment which stage asks (``flywheel.tell_environment``): both the
    # annotate and the evaluate stage ask for labels in one generation, each with its own tasks.
    def enter_stage(self, generation: int, stage: str) -> None:
        self.stage = (generation, stage)

    def stage_folder(self, tasks: Sequence[AnnotationTask] = ()) -> Path:
        if self.stage is not None:
            generation, stage = self.stage
            return self.people_dir / f"gen-{generation}" / stage
        # Called outside the loop: a folder keyed by the tasks, the same for the same tasks.
        digest = hashlib.sha256("\n".join(task.task_id for task in tasks).encode()).hexdigest()[:12]
        return self.people_dir / f"tasks-{digest}"

    # -- annotations

    def fill_annotations(self, tasks: Sequence[AnnotationTask]) -> list[Annotation]:
        tasks = list(tasks)
        folder = self.stage_folder(tasks)
        tasks_path, filled, key_path = folder / artifacts.ANNOTATION_TASKS, folder / artifacts.ANNOTATIONS, folder / artifacts.ANNOTATION_KEY
        if tasks_path.is_file():
            try:
                exported = list(read_tasks(key_path if key_path.is_file() else tasks_path))
            except ValueError as error:
                raise PeopleFolderError(f"{error} (the exported tasks file is the flywheel's: restore it)") from None
            difference = _first_task_difference(exported, tasks)
            if difference is not None:
                raise PeopleFolderError(
                    f"{tasks_path}:{difference}: this run did not rebuild the exported tasks (were the model, "
                    f"generation backend, dtype or seed changed?); re-run with the settings of the export, or "
                    f"move {folder} away to export new tasks (its labels would not fit them)")
        else:
            write_jsonl(key_path, tasks)
            write_jsonl(tasks_path, (blinded(task) for task in tasks))
            exported = tasks
        annotators = self.config.environment.annotators
        judged = self._judge_annotations(folder, exported) if annotators != "people" else []
        if annotators == "llm_judge":
            return judged
        if not filled.is_file():
            raise self._waiting_for_annotations(exported, tasks_path, filled)
        accepted, report, rejected = import_filled_annotations(filled, exported, folder / QUARANTINE_FILE)
        if judged:
            report.llm_judge_agreement = judge_agreement(judged, accepted)
        write_json(folder / IMPORT_REPORT_FILE, report.to_json())
        self.imports.append(report)
        for row in rejected[:SHOWN_QUARANTINED]:
            self.say(f"quarantined {row.message()}")
        if len(rejected) > SHOWN_QUARANTINED:
            self.say(f"... and {len(rejected) - SHOWN_QUARANTINED} more in {folder / QUARANTINE_FILE}")
        self.say(f"annotations {filled}: read {report.read} = accepted {report.accepted} + quarantined "
                 f"{report.quarantined} ({report.tasks_labelled} of {report.tasks_exported} tasks labelled, "
                 f"{report.annotators} annotators)")
        if not accepted:
            raise PeopleFolderError(f"{filled}: <file>: no usable annotation ({report.read} rows read, "
                                    f"{report.quarantined} quarantined: {folder / QUARANTINE_FILE}); "
                                    f"fix the rows and re-run")
        if judged:
            agreement = report.llm_judge_agreement
            self.say(f"LLM judge vs people on {agreement['pairwise_tasks']:.0f} pairwise and "
                     f"{agreement['rating_tasks']:.0f} rating tasks: " + ", ".join(
                         f"{key} {agreement[key]:.2f}" for key in ("pairwise_agreement", "pairwise_kappa",
                                                                   "rating_kappa", "rating_correlation")
                         if key in agreement))
        return accepted + judged

    def _judge_annotations(self, folder: Path, tasks: Sequence[AnnotationTask]) -> list[Annotation]:
        """The LLM judge's labels of the exported tasks, asked once (see the module docstring)."""
        settings = self.config.llm_judge
        labels_path, report_path = folder / JUDGE_FILE, folder / JUDGE_REPORT_FILE
        asked_as = {"model": settings.model, "rubric_sha256": hashlib.sha256(settings.rubric.encode()).hexdigest()}
        if labels_path.is_file() and report_path.is_file():  # the report is written last: the labels are whole
            saved = json.loads(report_path.read_text(encoding="utf-8"))
            # A pass that labelled nothing is asked again (a server's bad day is not kept).
            if {key: saved.get(key) for key in asked_as} == asked_as and saved.get("labelled"):
                return list(read_annotations(labels_path))
        judge = LLMJudge(settings.base_url, settings.model, settings.rubric,
                         api_key=os.environ.get(settings.api_key_env, ""), max_tokens=settings.max_tokens,
                         concurrency=settings.concurrency)
        try:
            judged, counts = judge.judge(tasks)
        except JudgeEndpointError as error:
            raise ConfigError(f"llm_judge.base_url: {error}") from None
        write_jsonl(labels_path, judged)
        write_json(report_path, asked_as | {"base_url": settings.base_url} | counts.to_json())
        self.say(f"LLM judge {settings.model}: {counts.labelled} of {counts.tasks} tasks labelled "
                 f"({counts.position_disagreements} position disagreements, {counts.unparseable} unparseable "
                 f"answers) -> {labels_path}")
        if not judged and self.config.environment.annotators == "llm_judge":
            raise PeopleFolderError(f"{labels_path}: <file>: the LLM judge labelled none of {counts.tasks} tasks "
                                    f"({report_path}); check llm_judge.model and llm_judge.rubric")
        return judged

    def _waiting_for_annotations(self, tasks: Sequence[AnnotationTask], tasks_path: Path,
                                 filled: Path) -> WaitingForPeople:
        kinds = {kind: sum(task.kind == kind for task in tasks) for kind in ("pairwise", "rating")}
        generation = self.stage[0] if self.stage else None
        stage = f"generation {generation} {self.stage[1]}" if self.stage else "annotation"
        message = "\n".join([
            f"{stage}: {len(tasks)} annotation tasks ({kinds['pairwise']} pairwise, {kinds['rating']} rating) "
            f"wait for annotators.",
            f"  tasks:  {tasks_path}",
            f"  fill:   {filled}",
            '          one JSON line per label: the task\'s line plus "annotator_id" and "label" '
            '({"preferred": 0 or 1} for a pairwise task, {"rating": 1 to 5} for a rating task); '
            "several annotators may label a task",
            *([f"  judged: {tasks_path.parent / JUDGE_FILE} (the LLM judge's labels, done; its agreement with "
               f"yours goes to {IMPORT_REPORT_FILE})"] if self.config.environment.annotators == "both" else []),
            f"  resume: {self.resume_command}",
        ])
        return WaitingForPeople(message, generation=generation, waiting_for="annotations", path=filled,
                                resume_command=self.resume_command)

    # -- traffic

    def collect_traffic(self, config: Config, arms: list[ArmConfig], out_dir: Path, generation: int,
                        scale: float = 1.0) -> dict[str, float]:
        folder = self.people_dir / f"gen-{generation}" / "deploy"
        traffic_dir = folder / TRAFFIC_DIR
        parts = traffic_parts(traffic_dir)
        from_data_traffic = False
        if not parts and generation == 0 and config.environment.generation0_window == "data_traffic":
            parts = [part for source in config.data.traffic for part in traffic_parts(Path(source))]
            from_data_traffic = bool(parts)
        if not parts:
            self._write_arms(folder / ARMS_FILE, arms, generation, scale, traffic_dir)
            raise self._waiting_for_traffic(arms, generation, scale, folder / ARMS_FILE, traffic_dir)
        mapping = copy_traffic(parts, out_dir / artifacts.TRAFFIC)
        write_json(out_dir / TRAFFIC_PARTS_FILE, {"generation": generation, "from_data_traffic": from_data_traffic,
                                                  "parts": mapping})
        lines = sum(part["lines"] for part in mapping)
        self.say(f"traffic window of generation {generation}: {lines} lines from {len(mapping)} part(s)"
                 + (" of data.traffic (generation 0's window)" if from_data_traffic else f" in {traffic_dir}"))
        return {"traffic_parts": float(len(mapping)), "traffic_lines": float(lines),
                "window_from_data_traffic": float(from_data_traffic)}

    def serve_command(self, arms: list[ArmConfig], traffic_dir: Path) -> str:
        """``characterflywheel serve`` with the run's config, these arms and the window's log folder."""
        served = [arm.model_dump(mode="json", exclude_none=True) for arm in arms]
        return shlex.join(["characterflywheel", "serve", *self.config_args, "--log-dir", str(traffic_dir),
                           "--set", f"serve.arms={toml_inline(served)}"])

    def _write_arms(self, path: Path, arms: list[ArmConfig], generation: int, scale: float, traffic_dir: Path) -> None:
        write_json(path, {"generation": generation, "window_scale": scale,
                          "arms": [arm.model_dump(mode="json") for arm in arms],
                          "traffic_dir": str(traffic_dir), "serve_command": self.serve_command(arms, traffic_dir),
                          "resume_command": self.resume_command})

    def _waiting_for_traffic(self, arms: list[ArmConfig], generation: int, scale: float, arms_path: Path,
                             traffic_dir: Path) -> WaitingForPeople:
        names = ", ".join(f"{arm.name} ({arm.model_version})" for arm in arms)
        longer = f", {scale:g} times as long as the usual window (flywheel.final_window_scale)" if scale != 1 else ""
        lines = [
            f"generation {generation} deploy: the A/B window waits for users: serve {len(arms)} arm(s), "
            f"{names}{longer}.",
            f"  arms:   {arms_path}",
            f"  serve:  {self.serve_command(arms, traffic_dir)}",
            '          or your own stack, logging one conversation a line in the traffic schema with its "arm" '
            'and "model_version"',
            f"  log:    put the window's log in {traffic_dir}/ (JSONL, JSONL.gz or Parquet parts; `serve` "
            "writes traffic.jsonl there when it stops)",
        ]
        if (traffic_dir / artifacts.EVENTS).is_file():
            lines.append(f"  found:  {traffic_dir / artifacts.EVENTS} but no traffic log yet: the gateway folds its "
                         "events into traffic.jsonl when it stops (Ctrl-C)")
        lines.append(f"  resume: {self.resume_command}")
        return WaitingForPeople("\n".join(lines), generation=generation, waiting_for="traffic", path=traffic_dir,
                                resume_command=self.resume_command)

    # -- no hidden world

    def truth(self, prompts: list[dict[str, Any]], replies: list[str]) -> None:
        return None

