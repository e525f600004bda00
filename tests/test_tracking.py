from pathlib import Path

import mlflow

from characterflywheel.runs import RunDir, StageContext
from characterflywheel.tracking import MlflowStageLogger, tracking_uri


def test_completed_stage_is_an_mlflow_run_in_the_run_directory(tmp_path: Path) -> None:
    root = tmp_path / "run"
    logger = MlflowStageLogger(root, "exp")

    def stage(context: StageContext) -> None:
        (context.out_dir / "a.txt").write_text("a")
        context.log_metrics({"accuracy": 0.75})

    RunDir(root).run_stage(1, "reward", stage, params={"lr": 0.01, "opt": {"name": "adam"}}, config_hash="abc",
                           on_complete=[logger])
    assert (root / "mlflow.db").is_file()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(root))
    [run] = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert run.info.run_name == "gen-1/reward"
    assert run.data.metrics == {"accuracy": 0.75}
    assert run.data.params == {"lr": "0.01", "opt.name": "adam", "config_hash": "abc"}
    assert run.data.tags["stage"] == "reward"
    assert "manifest.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert str(root.resolve()) in client.get_experiment_by_name("exp").artifact_location
