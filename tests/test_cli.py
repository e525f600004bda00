import tomllib
from pathlib import Path

from typer.testing import CliRunner

from characterflywheel.cli import app
from characterflywheel.config import load_config

runner = CliRunner()


def test_init_writes_a_commented_valid_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "flywheel.toml"
    result = runner.invoke(app, ["init", str(path), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert text.count("\n# ") > 10
    assert tomllib.loads(text)["name"] == "tiny"
    assert load_config(path) == load_config(preset="tiny")
    again = runner.invoke(app, ["init", str(path)])
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_config_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[generation]\nbatch_size = 0\n")
    result = runner.invoke(app, ["demo", "--config", str(bad)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "generation.batch_size" in lines[0] and str(bad) in "".join(lines)
    assert "Traceback" not in result.output
