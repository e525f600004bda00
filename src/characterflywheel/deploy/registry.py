"""The model registry with lineage: every generation's policy as a version of one MLflow registered model.

Built on MLflow's model registry (``MlflowClient``) over the same local SQLite store the stage tracking
uses (``runs/<name>/mlflow.db``, see :mod:`characterflywheel.tracking`), so ``mlflow ui`` shows the
stage runs and the registered versions side by side. What MLflow does not give us is written here:

* **lineage** -- each version carries tags ``generation``, ``model_version`` (``gen-3``),
  ``parent_version`` (the registry version of its parent, empty for a root) and
  ``parent_model_version`` (``gen-2``); ``Registry.lineage(version)`` walks the parent tags.
* **data manifests, config, metrics, gates** -- the ``lineage`` dict (manifest hashes, sources) becomes
  ``lineage.<key>`` tags, the config hash a ``config_hash`` tag, the metrics the registering MLflow
  run's metrics, the gate result ``gates.passed`` / ``gates.reasons`` tags; the whole record is also
  logged as ``registry_record.json`` next to the model.
* **champion history and one-call rollback** -- MLflow aliases point at one version and keep no
  history, so the registered model carries a ``champion_history`` tag (JSON list of versions, the
  current champion last) and a ``rollback_log`` tag; ``rollback()`` pops the current champion.

Assumptions: the model is an HF folder (``save_pretrained`` output); it is copied into the run's
artifacts (``MlflowClient.log_artifacts``) so a version stays loadable when the training folder is
removed or rewritten. With a local artifact store, ``local_path`` returns that copy in place; with a
remote one, it downloads once into ``<run_root>/registry-cache/<model>/v<version>``.
``copy_models=False`` registers the folder where it is instead (no copy: saves a model's size of disk
per generation, but the version breaks if the folder is deleted or rewritten). A LoRA child kept as an
adapter (``train.lora_save = "adapter"``) is always registered where it is: it loads only on top of its
parents' folders in the run. Registering the same
folder content again for the same generation returns the existing version (a resumed stage does not
register twice). Registry version numbers are returned as strings.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from characterflywheel.models.loading import is_adapter_folder
from characterflywheel.runs import content_hash
from characterflywheel.tracking import mlflow_key
from characterflywheel.tracking import tracking_uri as run_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_ARTIFACT_PATH = "model"
RECORD_ARTIFACT = "registry_record.json"
CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG, ROLLBACK_TAG = "champion_history", "rollback_log"
DEFAULT_EXPERIMENT = "model-registry"
_TAG_VALUE_LIMIT = 4900  # MLflow caps tag values at 5000 characters
_ROLLBACK_LOG_KEEP = 50


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to...)."""


@dataclass(frozen=True)
class ModelRef:
    """One registered version: its registry number, generation, ``gen-<n>`` name and local HF folder."""

    version: str
    generation: int
    model_version: str
    path: Path | None


def _quiet_mlflow() -> None:
    """No artifact progress bars, no INFO lines on database creation (call after importing mlflow)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text[:_TAG_VALUE_LIMIT]


def _finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def _local_file_path(uri: str) -> Path | None:
    """The filesystem path of a ``file:`` URI or plain path; None for a remote URI."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


class Registry:
    """The registered model ``model_name`` in the MLflow registry of a run directory (or any tracking URI).

    ``Registry(run_root)`` uses ``sqlite:///<run_root>/mlflow.db`` and keeps artifacts under
    ``<run_root>/mlartifacts``; ``Registry("sqlite:///...")`` or an ``http(s)://`` server URI works too.
    """

    def __init__(self, location: Path | str, model_name: str = "policy", experiment: str = DEFAULT_EXPERIMENT,
                 copy_models: bool = True) -> None:
        import mlflow

        _quiet_mlflow()

        self.model_name = model_name
        self.copy_models = copy_models
        self.run_root: Path | None = None
        text = str(location)
        if "://" in text:
            self.uri = text
        else:
            self.run_root = Path(location)
            self.run_root.mkdir(parents=True, exist_ok=True)
            self.uri = run_tracking_uri(self.run_root)
        self.client: MlflowClient = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self._experiment_name = experiment
        self._experiment_id: str | None = None
        self._ensure_registered_model()

    # ------------------------------------------------------------------ setup

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            self.client.create_registered_model(
                self.model_name, description="Policy generations of a characterflywheel run, with lineage.")

    def _experiment(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self._experiment_name)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                location = (self.run_root / "mlartifacts").resolve().as_uri() if self.run_root else None
                self._experiment_id = self.client.create_experiment(self._experiment_name,
                                                                    artifact_location=location)
        return self._experiment_id

    # ------------------------------------------------------------------ versions

    def _versions(self) -> list[ModelVersion]:
        found = self.client.search_model_versions(f"name='{self.model_name}'")
        return sorted(found, key=lambda mv: int(mv.version))

    def _get(self, version: str | int) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.model_name, str(version))
        except MlflowException as error:
            raise RegistryError(f"registry {self.model_name}: no version {version}") from error

    def resolve_version(self, reference: str | int) -> str:
        """A registry version number for a version number or a ``gen-<n>`` model version (latest wins)."""
        text = str(reference)
        named = [mv for mv in self._versions() if mv.tags.get("model_version") == text]
        if named:
            return str(named[-1].version)
        if text.isdigit() and any(str(mv.version) == text for mv in self._versions()):
            return text
        raise RegistryError(f"registry {self.model_name}: no version or model_version {text!r}")

    def register(self, model_dir: Path | str, generation: int, parent_version: str | int | None,
                 lineage: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
                 gates: Mapping[str, Any] | None = None, config_hash: str | None = None,
                 model_version: str | None = None) -> str:
        """Register ``model_dir`` as a new version; returns its registry version number (a string).

        ``parent_version`` is a registry version number or a ``gen-<n>`` model version; a parent that
        is not in this registry is kept as ``parent_model_version`` only (lineage stops there). The
        same folder content registered again for the same generation (a resumed or re-run stage)
        updates that version's tags, metrics and record instead of adding a version.
        """
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file() and not is_adapter_folder(model_dir):
            raise RegistryError(f"{model_dir}: not an HF model folder (config.json missing) nor a PEFT adapter")
        lineage, metrics, gates = dict(lineage or {}), dict(metrics or {}), dict(gates or {})
        name = model_version or f"gen-{generation}"
        model_hash = content_hash(model_dir)
        parent_number, parent_name = self._parent(parent_version)
        config_hash = config_hash if config_hash is not None else str(lineage.get("config_hash", ""))
        reasons = [str(r) for r in gates.get("reasons") or []]
        if not reasons:
            reasons = [f"{c.get('name')}: {c.get('reason')}" for c in gates.get("checks", [])
                       if isinstance(c, Mapping) and not c.get("passed", True)]
        tags = {
            "generation": str(generation), "model_version": name, "parent_version": parent_number,
            "parent_model_version": parent_name, "model_hash": model_hash, "config_hash": config_hash,
            "gates.passed": str(bool(gates["passed"])).lower() if "passed" in gates else "",
            "gates.reasons": _tag_value(reasons),
            **{f"lineage.{key}": _tag_value(value) for key, value in lineage.items()},
        }
        record = {"generation": generation, "model_version": name, "parent_version": parent_number or None,
                  "parent_model_version": parent_name or None, "model_hash": model_hash,
                  "config_hash": config_hash, "lineage": lineage, "metrics": metrics, "gates": gates,
                  "source_dir": str(model_dir.resolve())}
        description = self._description(name, parent_name, gates, reasons)
        existing = self._find(generation, model_hash)
        if existing is not None:
            self._update(existing, tags, metrics, record, description)
            return existing
        # An adapter child stands on its parents' folders in the run: a copy of it alone would not load.
        copy = self.copy_models and not is_adapter_folder(model_dir)
        run_id = self._log_run(model_dir if copy else None, name, tags, metrics, record)
        source = f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}" if copy else model_dir.resolve().as_uri()
        created = self.client.create_model_version(self.model_name, source, run_id=run_id, tags=tags,
                                                   description=description)
        return str(created.version)

    def _update(self, version: str, tags: Mapping[str, str], metrics: Mapping[str, Any], record: dict[str, Any],
                description: str) -> None:
        mv = self._get(version)
        for key, value in tags.items():
            if mv.tags.get(key) != value:
                self.client.set_model_version_tag(self.model_name, version, key, value)
        self.client.update_model_version(self.model_name, version, description=description)
        if mv.run_id:
            self._log_metrics(mv.run_id, metrics)
            self.client.log_dict(mv.run_id, record, RECORD_ARTIFACT)

    def _log_metrics(self, run_id: str, metrics: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        finite = _finite_metrics(metrics)
        entries = [Metric(mlflow_key(key), value, 0, 0) for key, value in finite.items()]
        for start in range(0, len(entries), 1000):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=entries[start:start + 1000])

    def _find(self, generation: int, model_hash: str) -> str | None:
        for mv in reversed(self._versions()):
            if mv.tags.get("generation") == str(generation) and mv.tags.get("model_hash") == model_hash:
                return str(mv.version)
        return None

    def _parent(self, parent_version: str | int | None) -> tuple[str, str]:
        """(registry version or "", model version name or "") of a parent reference."""
        if parent_version is None or str(parent_version) == "":
            return "", ""
        try:
            number = self.resolve_version(parent_version)
        except RegistryError:
            return "", str(parent_version)
        return number, self._get(number).tags.get("model_version", "")

    def _log_run(self, model_dir: Path | None, name: str, tags: dict[str, str], metrics: Mapping[str, Any],
                 record: dict[str, Any]) -> str:
        run = self.client.create_run(self._experiment(), run_name=f"register/{name}",
                                     tags={"registry.model": self.model_name, **tags})
        run_id = run.info.run_id
        try:
            self._log_metrics(run_id, metrics)
            if model_dir is not None:
                self.client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
            self.client.log_dict(run_id, record, RECORD_ARTIFACT)
        except Exception:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id)
        return run_id

    @staticmethod
    def _description(name: str, parent_name: str, gates: Mapping[str, Any], reasons: list[str]) -> str:
        verdict = "gates passed" if gates.get("passed") else "gates failed: " + "; ".join(reasons)
        return f"{name} (parent {parent_name or 'none'}): {verdict}"[:_TAG_VALUE_LIMIT]

    def record(self, version: str | int) -> dict[str, Any]:
        """The full registration record (lineage, metrics, gates) logged with the version."""
        mv = self._get(version)
        root = self._artifact_root(mv)
        path = root / RECORD_ARTIFACT if root is not None else Path(self._download(mv, RECORD_ARTIFACT))
        return json.loads(path.read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ paths

    def _artifact_root(self, mv: ModelVersion) -> Path | None:
        """The run's artifact folder when it is on this filesystem, else None."""
        artifact_uri = self.client.get_run(mv.run_id).info.artifact_uri
        return _local_file_path(artifact_uri)

    def _cache(self, mv: ModelVersion) -> Path:
        base = self.run_root or Path.home() / ".cache" / "characterflywheel"
        cache = base / "registry-cache" / self.model_name / f"v{mv.version}"
        cache.mkdir(parents=True, exist_ok=True)
        return cache

    def _download(self, mv: ModelVersion, artifact_path: str) -> str:
        import mlflow

        return mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=artifact_path,
                                                   dst_path=str(self._cache(mv)), tracking_uri=self.uri)

    def _model_location(self, mv: ModelVersion) -> Path | None:
        """The version's model folder when it is on this filesystem (no download), else None."""
        if mv.source.startswith("runs:/"):
            root = self._artifact_root(mv)
            return None if root is None else root / MODEL_ARTIFACT_PATH
        return _local_file_path(mv.source)

    def local_path(self, version: str | int) -> Path:
        """A local HF folder of the version: the artifact copy itself for a local store, else a download."""
        mv = self._get(version)
        path = self._model_location(mv)
        if path is None:
            if mv.source.startswith("runs:/"):
                return Path(self._download(mv, MODEL_ARTIFACT_PATH))
            import mlflow

            cache = self._cache(mv)
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(cache)))
        if not (path / "config.json").is_file() and not is_adapter_folder(path):
            raise RegistryError(f"registry {self.model_name} v{version}: model files missing at {path}")
        return path

    def ref(self, version: str | int, resolve_path: bool = True) -> ModelRef:
        """The version as a ``ModelRef``; ``resolve_path=False`` never downloads (path None when remote)."""
        mv = self._get(version)
        path = self.local_path(mv.version) if resolve_path else self._model_location(mv)
        return ModelRef(str(mv.version), int(mv.tags.get("generation", -1)),
                        mv.tags.get("model_version", ""), path)

    # ------------------------------------------------------------------ aliases

    def _alias(self, alias: str) -> str | None:
        aliases = self.client.get_registered_model(self.model_name).aliases
        value = aliases.get(alias)
        return None if value is None else str(value)

    def _history(self) -> list[str]:
        raw = self.client.get_registered_model(self.model_name).tags.get(HISTORY_TAG, "[]")
        return [str(v) for v in json.loads(raw)]

    def _set_history(self, history: list[str]) -> None:
        self.client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(history))

    def set_alias(self, alias: str, version: str | int) -> None:
        """Point ``alias`` at ``version``; moving ``champion`` appends to the champion history."""
        number = self.resolve_version(version)
        if alias == CHAMPION:
            history = self._history()
            if not history or history[-1] != number:
                self._set_history(history + [number])
        self.client.set_registered_model_alias(self.model_name, alias, number)

    def clear_alias(self, alias: str) -> None:
        if self._alias(alias) is not None:
            self.client.delete_registered_model_alias(self.model_name, alias)

    def champion(self) -> ModelRef | None:
        number = self._alias(CHAMPION)
        return None if number is None else self.ref(number)

    def challenger(self) -> ModelRef | None:
        number = self._alias(CHALLENGER)
        return None if number is None else self.ref(number)

    def champion_history(self) -> list[str]:
        """Versions that were champion, oldest first, the current one last (rollbacks removed)."""
        return self._history()

    def promote(self, version: str | int | None = None) -> ModelRef:
        """Make ``version`` (default: the challenger) champion; the old champion is recorded on it."""
        if version is None:
            version = self._alias(CHALLENGER)
            if version is None:
                raise RegistryError(f"registry {self.model_name}: no challenger to promote")
        number = self.resolve_version(version)
        previous = self._alias(CHAMPION)
        if previous == number:
            return self.ref(number)
        self.client.set_model_version_tag(self.model_name, number, "previous_champion", previous or "")
        self.set_alias(CHAMPION, number)
        if self._alias(CHALLENGER) == number:
            self.clear_alias(CHALLENGER)
        return self.ref(number)

    def rollback(self) -> ModelRef:
        """Put the previous champion back (one call); the rolled-back version is tagged and logged."""
        history = self._history()
        current = self._alias(CHAMPION)
        if current is not None and (not history or history[-1] != current):
            history.append(current)
        if len(history) < 2:
            raise RegistryError(f"registry {self.model_name}: no previous champion to roll back to")
        rolled_back = history.pop()
        restored = history[-1]
        self._set_history(history)
        self.client.set_registered_model_alias(self.model_name, CHAMPION, restored)
        self.client.set_model_version_tag(self.model_name, rolled_back, "rolled_back", "true")
        raw = self.client.get_registered_model(self.model_name).tags.get(ROLLBACK_TAG, "[]")
        log = json.loads(raw) + [{"from": rolled_back, "to": restored}]
        self.client.set_registered_model_tag(self.model_name, ROLLBACK_TAG, json.dumps(log[-_ROLLBACK_LOG_KEEP:]))
        return self.ref(restored)

    # ------------------------------------------------------------------ lineage

    def lineage(self, version: str | int) -> list[ModelRef]:
        """Ancestors of ``version``, its parent first and the root last (paths not downloaded)."""
        ancestors: list[ModelRef] = []
        seen = {self.resolve_version(version)}
        parent = self._get(next(iter(seen))).tags.get("parent_version", "")
        while parent:
            if parent in seen:
                raise RegistryError(f"registry {self.model_name}: lineage cycle at version {parent}")
            seen.add(parent)
            ancestors.append(self.ref(parent, resolve_path=False))
            parent = self._get(parent).tags.get("parent_version", "")
        return ancestors

    def versions(self) -> list[ModelRef]:
        """Every registered version, oldest first (paths not downloaded)."""
        return [self.ref(mv.version, resolve_path=False) for mv in self._versions()]
