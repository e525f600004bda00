"""Reading a run directory for the report: per-generation summaries and experiment tables, normalised.

Input: ``<run_dir>/gen-<n>/summary.json`` (written by :mod:`characterflywheel.summary`) and optional
``<run_dir>/experiments/*.json`` (``{"name", "description", "columns", "rows"}``). Every section and
key of a summary may be missing; a figure is any ``{"value", "lo", "hi", "n"}`` dict. Two spellings
of some sections are accepted, because the summary copies stage outputs as they are:

* win rates: a figure, or ``{"reward_model": figure, "annotators": figure}`` (the offline report);
  ``annotator_win_rate_vs_parent`` / ``_vs_reference`` may also be separate figures;
* instruction following: ``offline.if_rate`` or ``offline.instruction_following``, ``{"child", "parent"}``;
* style features: ``{"parent", "child", "reward_share", "flagged"}`` numbers, or the style monitor's
  ``{"mean": figure, "parent_mean": figure, "share", "flagged"}``;
* history bias: ``{feature: {"with_history", "without_history", "flag"}}``, or the history-bias
  report's ``{"features": {feature: {"rate_present": figure, "rate_absent": figure, "mirrors"}}}``,
  possibly under ``"child"``.

An unreadable ``summary.json`` is an error naming the file; an unreadable experiment file is kept as
an :class:`Experiment` with ``error`` set, so the rest of the report still renders.
"""

from __future__ import annotations

from characterflywheel import artifacts

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

_GENERATION_DIR = re.compile(r"^gen-(\d+)$")

# Data-count keys in pipeline order (the funnel); other keys follow in their own order.
FUNNEL_ORDER = ("traffic_conversations", "prompts", "privacy_kept", "privacy_masked", "privacy_dropped",
                "diverse", "curated", "heldout", "annotations", "sft", "prefs")


class ReportInputError(ValueError):
    """A run directory file the report cannot read (the message names the file and the field)."""


@dataclass(frozen=True)
class Reading:
    """A figure read back from a run's JSON for display: value, optional interval and n."""

    value: float
    lo: float | None = None
    hi: float | None = None
    n: int | None = None
    relative: bool = False  # a relative change (treatment / control - 1), shown as a percentage

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None


@dataclass(frozen=True)
class StyleFeature:
    name: str
    parent: float | None
    child: float | None
    reward_share: float | None
    flagged: bool


@dataclass(frozen=True)
class HistoryBiasFeature:
    name: str
    with_history: float | None
    without_history: float | None
    flagged: bool


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: Any
    threshold: Any
    passed: bool
    reason: str
    skipped: bool = False


@dataclass
class Experiment:
    name: str
    description: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    source: str = ""
    error: str | None = None


# --------------------------------------------------------------------------- primitives


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, NaN, text, bool)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def section(data: Any, *path: str) -> Any:
    """``data[path[0]][path[1]]...`` or None when any step is missing or not a mapping."""
    node = data
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def figure(node: Any) -> Reading | None:
    """A ``{value, lo, hi, n}`` figure; a bare number is a figure without interval."""
    if isinstance(node, Mapping):
        value = number(node.get("value"))
        if value is None:
            return None
        n = number(node.get("n"))
        return Reading(value, number(node.get("lo")), number(node.get("hi")), None if n is None else int(n))
    value = number(node)
    return None if value is None else Reading(value)


# --------------------------------------------------------------------------- reading files


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportInputError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from error
    except OSError as error:
        raise ReportInputError(f"{path}: cannot read ({error.strerror})") from error


def generation_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for child in run_dir.iterdir() if run_dir.is_dir() else []:
        match = _GENERATION_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def load_summaries(run_dir: Path) -> list[dict[str, Any]]:
    """Each generation's summary, in generation order; generations without a summary are skipped."""
    if not Path(run_dir).is_dir():
        raise ReportInputError(f"{run_dir}: not a run directory")
    summaries = []
    for generation, folder in generation_dirs(Path(run_dir)):
        path = folder / artifacts.SUMMARY
        if not path.is_file():
            continue
        data = _read_json(path)
        if not isinstance(data, Mapping):
            raise ReportInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
        summary = dict(data)
        if number(summary.get("generation")) is None:
            summary["generation"] = generation
        summary["generation"] = int(summary["generation"])
        summary.setdefault("model_version", f"gen-{summary['generation']}")
        summaries.append(summary)
    return sorted(summaries, key=lambda s: s["generation"])


def load_experiments(run_dir: Path) -> list[Experiment]:
    folder = Path(run_dir) / "experiments"
    if not folder.is_dir():
        return []
    return [_experiment(path) for path in sorted(folder.glob("*.json"))]


def _experiment(path: Path) -> Experiment:
    try:
        data = _read_json(path)
    except ReportInputError as error:
        return Experiment(name=path.stem, source=path.name, error=str(error))
    if not isinstance(data, Mapping):
        return Experiment(name=path.stem, source=path.name, error=f"{path}: expected a JSON object")
    columns = data.get("columns") or []
    rows = data.get("rows") or []
    if not isinstance(columns, list):
        return Experiment(name=path.stem, source=path.name, error=f"{path}: field 'columns' is not a list")
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, list)), None) \
            if isinstance(rows, list) else None
        where = f"rows[{bad}]" if bad is not None else "rows"
        return Experiment(name=path.stem, source=path.name, error=f"{path}: field '{where}' is not a list")
    return Experiment(name=str(data.get("name") or path.stem), description=str(data.get("description") or ""),
                      columns=[str(c) for c in columns], rows=rows, source=path.name)


# --------------------------------------------------------------------------- normalised views


def _judged(node: Any) -> tuple[Reading | None, Reading | None]:
    """(reward-model figure, annotator figure) of a win-rate node in either spelling."""
    if isinstance(node, Mapping) and "value" not in node:
        return figure(node.get("reward_model")), figure(node.get("annotators"))
    return figure(node), None


def win_rate(summary: Mapping[str, Any], opponent: str, judge: str = "reward_model") -> Reading | None:
    """The child's win rate vs ``opponent`` ("parent"/"reference") judged by "reward_model" or "annotators"."""
    offline = summary.get("offline")
    model_figure, annotator_figure = _judged(section(offline, f"win_rate_vs_{opponent}"))
    if judge == "reward_model":
        return model_figure
    return annotator_figure or figure(section(offline, f"annotator_win_rate_vs_{opponent}"))


def rate(summary: Mapping[str, Any], kind: str, who: str = "child") -> Reading | None:
    """Instruction-following (``kind="if"``) or violation (``"violation"``) rate of child or parent."""
    offline = summary.get("offline")
    if kind == "if":
        node = section(offline, "if_rate")
        if node is None:
            node = section(offline, "instruction_following")
    else:
        node = section(offline, "violation_rate")
    return figure(section(node, who))


def lift(summary: Mapping[str, Any], metric: str, over_generation0: str | None = None) -> Reading | None:
    """A/B lift of ``breadth`` or ``depth`` (treatment vs control); with ``over_generation0`` (an arm,
    e.g. ``challenger``), that arm's lift over the generation-0 holdout arm instead.

    The A/B analysis reports relative lifts (``relative``, else ``value``, with ``lo``/``hi``): the
    figure is marked ``relative`` and shown as a percentage everywhere.
    """
    where = ("vs_generation0", over_generation0) if over_generation0 else ("ab",)
    node = section(summary, *where, f"{metric}_lift")
    if isinstance(node, Mapping) and number(node.get("relative")) is not None:
        node = {**node, "value": node["relative"]}
    found = figure(node)  # the A/B read-out's lifts are relative (challenger / control - 1)
    return None if found is None else replace(found, relative=True)


def truth_series(summary: Mapping[str, Any], measure: str, who: str = "child") -> float | None:
    """``truth.<measure>.<who>``: ``rm_score`` (the proxy) or ``landscape_p_continue`` (hidden truth)."""
    return number(section(summary, "truth", measure, who))


def has_truth(summaries: list[dict[str, Any]]) -> bool:
    """Whether the run had a hidden landscape to score on (the simulated world)."""
    return any(truth_series(s, "landscape_p_continue", who) is not None
               for s in summaries for who in ("child", "parent"))


def style_features(summary: Mapping[str, Any]) -> list[StyleFeature]:
    features = section(summary, "style", "features")
    if features is None:
        features = section(summary, "offline", "style", "features")
    if not isinstance(features, Mapping):
        return []
    out = []
    for name, stats in features.items():
        if not isinstance(stats, Mapping):
            continue
        child = number(stats.get("child"))
        if child is None:
            child = _value(stats.get("mean"))
        parent = number(stats.get("parent"))
        if parent is None:
            parent = _value(stats.get("parent_mean"))
        share = number(stats.get("reward_share"))
        if share is None:
            share = number(stats.get("share"))
        out.append(StyleFeature(str(name), parent, child, share, bool(stats.get("flagged", False))))
    return out


def _value(node: Any) -> float | None:
    found = figure(node)
    return None if found is None else found.value


def history_bias(summary: Mapping[str, Any]) -> list[HistoryBiasFeature]:
    node = summary.get("history_bias")
    if isinstance(node, Mapping) and isinstance(node.get("child"), Mapping):
        node = node["child"]
    if isinstance(node, Mapping) and isinstance(node.get("features"), Mapping):
        node = node["features"]
    if not isinstance(node, Mapping):
        return []
    out = []
    for name, stats in node.items():
        if not isinstance(stats, Mapping):
            continue
        with_history = number(stats.get("with_history"))
        if with_history is None:
            with_history = _value(stats.get("rate_present"))
        without_history = number(stats.get("without_history"))
        if without_history is None:
            without_history = _value(stats.get("rate_absent"))
        flagged = bool(stats.get("flag", stats.get("flagged", stats.get("mirrors", False))))
        out.append(HistoryBiasFeature(str(name), with_history, without_history, flagged))
    return out


def gate_checks(summary: Mapping[str, Any]) -> list[GateCheck]:
    checks = section(summary, "gates", "checks")
    if not isinstance(checks, list):
        return []
    return [GateCheck(str(c.get("name", "")), c.get("value"), c.get("threshold"), bool(c.get("passed", False)),
                      str(c.get("reason") or ""), bool(c.get("skipped", False)))
            for c in checks if isinstance(c, Mapping)]


def gates_passed(summary: Mapping[str, Any]) -> bool | None:
    passed = section(summary, "gates", "passed")
    return None if passed is None else bool(passed)


def data_counts(summary: Mapping[str, Any]) -> dict[str, float]:
    """Data counts in funnel order (known stages first), numbers only."""
    counts = summary.get("data_counts")
    if not isinstance(counts, Mapping):
        return {}
    numeric = {str(k): v for k, v in ((k, number(v)) for k, v in counts.items()) if v is not None}
    ordered = {key: numeric[key] for key in FUNNEL_ORDER if key in numeric}
    return ordered | {key: value for key, value in numeric.items() if key not in ordered}


def flat_numbers(node: Any, prefix: str = "") -> dict[str, float]:
    """Numbers of a nested mapping as dotted keys (for the reward-model table)."""
    out: dict[str, float] = {}
    if isinstance(node, Mapping):
        for key, inner in node.items():
            out |= flat_numbers(inner, f"{prefix}{key}.")
    elif (value := number(node)) is not None:
        out[prefix[:-1]] = value
    return out


@dataclass(frozen=True)
class GenerationVerdict:
    generation: int
    gates: bool | None  # None: no gates (generation 0, or not reached yet)
    served: bool
    promoted: bool
    reason: str  # why it was or was not promoted
    truth_vs_parent: Mapping[str, Any] | None  # the truth set's paired child - parent, where the world has one


@dataclass(frozen=True)
class Verdict:
    """What a run came to: who is champion, what happened to each child and why, and, in the
    simulated world, whether the hidden truth agrees with the decisions."""

    champion: str
    generations: list[GenerationVerdict]
    champion_vs_generation0: Mapping[str, Any] | None
    truth_disagreements: list[str]

    @property
    def promoted(self) -> list[int]:
        return [g.generation for g in self.generations if g.promoted]


def _truth_pair(summary: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    found = section(summary, "truth", "truth_set", key)
    return found if isinstance(found, Mapping) and number(found.get("diff")) is not None else None


def run_verdict(summaries: list[dict[str, Any]]) -> Verdict:
    """Read the run's decisions (gates, serving, promotion) and the truth set's paired figures."""
    children = [s for s in summaries if s.get("generation", 0) > 0]
    champion = next((str(s["champion_version"]) for s in reversed(summaries) if s.get("champion_version")), "gen-0")
    verdicts, disagreements = [], []
    for s in children:
        passed = gates_passed(s)
        reasons = section(s, "gates", "reasons")
        if passed is False:
            reason = "stopped at its gates: " + ("; ".join(map(str, reasons)) if isinstance(reasons, list) and reasons
                                                   else "see the gate decisions")
        else:
            reason = str(section(s, "ab", "reason") or ("not served" if passed else "not evaluated yet"))
        truth = _truth_pair(s, "child_vs_parent")
        verdict = GenerationVerdict(int(s["generation"]), passed, bool(s.get("served")), bool(s.get("promoted")),
                                    reason, truth)
        verdicts.append(verdict)
        if truth is not None and number(truth.get("lo")) is not None:
            if verdict.promoted and truth["hi"] < 0:
                disagreements.append(f"gen {verdict.generation} was promoted but is worse than its parent")
            if not verdict.promoted and truth["lo"] > 0:
                disagreements.append(f"gen {verdict.generation} was not promoted but is better than its parent")
    holder = next((s for s in summaries if s.get("model_version") == champion and s.get("generation", 0) > 0), None)
    return Verdict(champion, verdicts, _truth_pair(holder, "child_vs_generation0") if holder else None, disagreements)
