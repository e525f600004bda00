"""MLflow tracking with a local store inside the run directory: no server, ``mlflow ui`` browses it.

Each completed stage becomes one MLflow run named ``gen-<n>/<stage>`` carrying the stage's params,
metrics, config hash and manifest, so a whole flywheel run is one experiment to compare in the UI:

    mlflow ui --backend-store-uri sqlite:///runs/<name>/mlflow.db

SQLite rather than MLflow's file store because the model registry (aliases, lineage) needs a
database backend and the file store is on its way out in MLflow 3.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from characterflywheel.runs import StageContext

_PARAM_VALUE_LIMIT = 500


def tracking_uri(run_root: Path) -> str:
    return f"sqlite:///{(run_root / 'mlflow.db').resolve()}"


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, into)
    else:
        into[prefix] = str(value)[:_PARAM_VALUE_LIMIT]


def mlflow_key(name: str) -> str:
    """MLflow allows only alphanumerics and ``_-. :/`` in names; anything else becomes ``_``."""
    return re.sub(r"[^\w\-. :/]", "_", name)[:250]


class MlflowStageLogger:
    """A ``RunDir.run_stage`` completion hook that records the stage in MLflow."""

    def __init__(self, run_root: Path, experiment: str) -> None:
        # Imported here: mlflow costs seconds to import and most commands never track.
        import mlflow

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self._mlflow = mlflow
        run_root.mkdir(parents=True, exist_ok=True)
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri(run_root))
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            artifacts = (run_root / "mlartifacts").resolve().as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            self.experiment_id = found.experiment_id

    def __call__(self, context: StageContext, manifest: dict[str, Any]) -> None:
        params: dict[str, str] = {}
        _flatten("", context.params, params)
        params["config_hash"] = str(manifest.get("config_hash", ""))
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"gen-{context.generation}/{context.name}",
            tags={"stage": context.name, "generation": str(context.generation)},
        )
        run_id = run.info.run_id
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(key), value, now, 0) for key, value in context.metrics.items()]
        param_list = [Param(mlflow_key(key), value) for key, value in params.items()]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limits: 1000 metrics, 100 params
            self.client.log_batch(run_id, metrics=metrics[start:start + 1000])
        for start in range(0, len(param_list), 100):
            self.client.log_batch(run_id, params=param_list[start:start + 100])
        self.client.log_dict(run_id, manifest, "manifest.json")
        self.client.set_terminated(run_id)
