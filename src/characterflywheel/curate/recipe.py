"""``consolidate``: the whole curation recipe in one call (prompts -> privacy -> diversity ->
stratify -> annotate), each phase in its own folder under ``out_dir``, counts reconciled.

Layout: ``out_dir/prompts/prompts.jsonl``, ``out_dir/privacy/{clean,dropped}.jsonl``,
``out_dir/diversity/diverse.jsonl``, ``out_dir/stratify/stratified.jsonl`` (the curated prompt set),
``out_dir/annotate/{tasks,annotations}.jsonl`` (only with a ``filler``), and
``out_dir/consolidation_report.json`` with every phase's report and the reconciliation
``assistant turns -> prompts -> after privacy -> after diversity -> after stratification``.
The flywheel's curate stage calls it once a generation (a resumable stage as a whole); scripts, the
benchmark and tests call it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from characterflywheel import artifacts
from characterflywheel.curate.annotate import Filler, run_annotate
from characterflywheel.curate.diversity import DIVERSE_FILENAME, run_diversity
from characterflywheel.curate.privacy import run_privacy
from characterflywheel.curate.prompts import PROMPTS_FILENAME, run_prompts
from characterflywheel.curate.records import write_json
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.curate.stratify import run_stratify

CONSOLIDATION_REPORT_FILENAME = "consolidation_report.json"


@dataclass
class ConsolidationReport:
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    curated: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "seconds": self.seconds, "curated": self.curated, "phases": self.phases}


def consolidate(
    conversations_parquet: Path, out_dir: Path, settings: CurateConfig, embedder: Any, progress: bool = False, *,
    seed: int = 0, cache_dir: Path | None = None, filler: Filler | None = None,
    candidates: Mapping[str, Sequence[str]] | None = None,
    generate: Callable[[list[dict[str, Any]]], dict[str, list[str]]] | None = None,
) -> ConsolidationReport:
    """Run every curation phase; returns the report (also written to ``out_dir``)."""
    out_dir = Path(out_dir)
    cache_dir = cache_dir if cache_dir is not None else out_dir / "embedding-cache"
    report = ConsolidationReport()

    def timed(name: str, step: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = step()
        report.seconds[name] = round(time.perf_counter() - started, 3)
        report.phases[name] = result.to_json()
        return result

    prompts = timed("prompts", lambda: run_prompts(conversations_parquet, out_dir / "prompts", settings, progress))
    privacy = timed("privacy", lambda: run_privacy(out_dir / "prompts" / PROMPTS_FILENAME, out_dir / "privacy",
                                                   settings, embedder, cache_dir=cache_dir, seed=seed,
                                                   progress=progress))
    diversity = timed("diversity", lambda: run_diversity(out_dir / "privacy" / artifacts.CLEAN, out_dir / "diversity",
                                                         settings, embedder, cache_dir=cache_dir, seed=seed,
                                                         progress=progress))
    stratified = timed("stratify", lambda: run_stratify(out_dir / "diversity" / DIVERSE_FILENAME,
                                                        out_dir / "stratify", settings, seed=seed))
    curated = out_dir / "stratify" / artifacts.STRATIFIED
    report.curated = str(curated)
    if filler is not None:
        if candidates is None and generate is not None:
            from characterflywheel.curate.records import read_prompt_records

            candidates = generate(list(read_prompt_records(curated))[: settings.annotation_prompts])
        timed("annotate", lambda: run_annotate(curated, out_dir / "annotate", settings, candidates=candidates,
                                               filler=filler, seed=seed))
    report.counts = {
        "conversations": prompts.conversations, "assistant_turns": prompts.assistant_turns,
        "skipped_turns": sum(prompts.skipped.values()), "prompts": prompts.prompts,
        "privacy_dropped": privacy.dropped, "after_privacy": privacy.kept,
        "diversity_dropped": diversity.dropped, "after_diversity": diversity.kept,
        "stratify_dropped": stratified.dropped, "curated": stratified.kept,
    }
    c = report.counts
    if not (c["assistant_turns"] == c["prompts"] + c["skipped_turns"]
            and c["prompts"] == c["after_privacy"] + c["privacy_dropped"]
            and c["after_privacy"] == c["after_diversity"] + c["diversity_dropped"]
            and c["after_diversity"] == c["curated"] + c["stratify_dropped"]):
        raise AssertionError(f"curation counts do not reconcile: {c}")
    write_json(out_dir / CONSOLIDATION_REPORT_FILENAME, report.to_json())
    return report
