"""Run directories whose stages resume: ``runs/<name>/gen-<n>/<stage>/`` with a manifest each.

A stage is a function that writes its outputs into a fresh folder. It runs in
``<stage>.partial/`` and is renamed to ``<stage>/`` only after its manifest is written, so a stage
folder either exists complete or not at all; a killed stage leaves only a ``.partial`` folder,
which the next attempt throws away. Long stages (training) keep checkpoints in ``<stage>.work/``,
which survives a kill and is removed once the stage completes, so they resume where they stopped.

Re-running skips a stage whose manifest matches: same input content hashes, same config hash,
same stage code version. Anything else re-runs it.

Why not a workflow engine (Prefect, Dagster, DVC): a run here is a short linear recipe on one
machine; a folder rename gives atomicity, and a manifest of content hashes is what DVC would keep.
Scale-out happens inside stages (Accelerate, vLLM, Ray), not between them.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from characterflywheel.data.jsonl import write_json

MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"
WORK_SUFFIX = ".work"
_VERSIONED_PACKAGES = ("characterflywheel", "torch", "transformers", "trl", "sentence-transformers")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, sorted)."""
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise FileNotFoundError(f"stage input not found: {path}")
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(child.relative_to(path).as_posix().encode())
        digest.update(file_sha256(child).encode())
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class StageContext:
    """What a stage function gets: where to write, where to keep checkpoints, and a metrics sink."""

    name: str
    generation: int
    out_dir: Path
    work_dir: Path
    inputs: dict[str, Path]
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)

    def log_metrics(self, values: Mapping[str, float]) -> None:
        self.metrics.update({key: float(value) for key, value in values.items()})


@dataclass(frozen=True)
class StageResult:
    name: str
    out_dir: Path
    manifest: dict[str, Any]
    skipped: bool


StageFn = Callable[[StageContext], None]
StageHook = Callable[[StageContext, dict[str, Any]], None]


class RunDir:
    """``<runs_dir>/<name>/`` and the stages of each generation inside it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def generation_dir(self, generation: int) -> Path:
        return self.root / f"gen-{generation}"

    def stage_dir(self, generation: int, stage: str) -> Path:
        return self.generation_dir(generation) / stage

    def manifest(self, generation: int, stage: str) -> dict[str, Any] | None:
        path = self.stage_dir(generation, stage) / MANIFEST
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def completed_stages(self, generation: int) -> list[str]:
        gen_dir = self.generation_dir(generation)
        if not gen_dir.is_dir():
            return []
        return sorted(d.name for d in gen_dir.iterdir() if d.is_dir() and (d / MANIFEST).is_file())

    def run_stage(
        self,
        generation: int,
        name: str,
        fn: StageFn,
        *,
        inputs: Mapping[str, Path] | None = None,
        params: Mapping[str, Any] | None = None,
        config_hash: str = "",
        code_version: str = "1",
        on_complete: Iterable[StageHook] = (),
    ) -> StageResult:
        """Run ``fn`` unless an identical completed run of this stage is already on disk."""
        inputs = {key: Path(value) for key, value in (inputs or {}).items()}
        params = dict(params or {})
        final = self.stage_dir(generation, name)
        identity = {
            "inputs": {key: content_hash(path) for key, path in sorted(inputs.items())},
            "config_hash": config_hash,
            "code_version": code_version,
        }
        existing = self.manifest(generation, name)
        if existing is not None and existing.get("status") == "complete" and _identity(existing) == identity:
            return StageResult(name, final, existing, skipped=True)

        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        work = final.with_name(final.name + WORK_SUFFIX)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        work.mkdir(parents=True, exist_ok=True)
        context = StageContext(name, generation, partial, work, inputs, params)
        started = _now()
        with PeakMemory() as memory:
            fn(context)
            release_freed_memory()
        manifest = {
            "stage": name,
            "generation": generation,
            "status": "complete",
            **identity,
            "input_paths": {key: str(path) for key, path in inputs.items()},
            "params": params,
            "metrics": context.metrics,
            "outputs": {
                child.relative_to(partial).as_posix(): file_sha256(child)
                for child in sorted(partial.rglob("*"))
                if child.is_file()
            },
            "versions": package_versions(),
            "started_at": started,
            "finished_at": _now(),
            # this stage's own peak: this process and the processes it started (herding's), together
            "peak_rss_mib": round(memory.peak_bytes / 2**20, 1),
        }
        write_json(partial / MANIFEST, manifest)
        for hook in on_complete:
            hook(context, manifest)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        shutil.rmtree(work, ignore_errors=True)
        return StageResult(name, final, manifest, skipped=False)


class PeakMemory:
    """The highest resident memory of this process and its descendants *together*, sampled every
    ``interval`` seconds while the block runs (and once at each end).

    Why sampled: ``getrusage``'s ``ru_maxrss`` is a process's high-water mark since it started, so
    it cannot say which stage reached it, and for children it gives the largest one alone, not the
    parent and its child at once, which is what the machine has to hold. A spike shorter than the
    interval can be missed; the stages' peaks are model loads and caches that last seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="peak-memory", daemon=True)

    def sample(self) -> int:
        total = 0
        for process in [self._process, *self._process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # it ended between the listing and the reading
                pass
        self.peak_bytes = max(self.peak_bytes, total)
        return total

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def release_freed_memory() -> None:
    """Collect garbage, then hand the heap's free pages back to the OS (glibc's ``malloc_trim``).

    A finished stage's models and caches are freed, but glibc keeps the freed pages of its heaps
    (hundreds of KB tensors land there, not in their own mappings), so the process's RSS stays at
    its peak while the next stage loads its own models. A 2 GB heap of 256 KB tensors freed at
    once: RSS 2.17 GB after ``free``, 0.26 GB after the trim."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas at ``arenas`` in this process and the processes it starts
    (``MALLOC_ARENA_MAX``), unless the environment already sets it.

    Why: glibc gives each thread that allocates its own arena (up to 8 a core), and freed memory in
    one arena is not reused by another. A traffic window has dozens of threads (simulated users
    scoring replies with the embedder, the gateway, its batcher): the demo's generation-2 window,
    alone in a fresh process, peaked at 6.28 GB with the default arenas and 5.46 GB with 2, in
    130 s against 140 s (docs/benchmarks.md)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)  # read by glibc when a child process starts
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas)  # this process: arenas made from now on
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        pass


def _identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {key: manifest.get(key) for key in ("inputs", "config_hash", "code_version")}
