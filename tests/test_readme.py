"""The README's examples run as written: its traffic record ingests, `init` writes a config `run` can
read, and its gateway client example talks to a served gateway (the address swapped for a free port,
the rest verbatim)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from characterflywheel.cli import app
from characterflywheel.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_traffic_example_ingests_as_one_accepted_record(tmp_path: Path) -> None:
    (record,) = blocks("json")
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text(json.dumps(json.loads(record)) + "\n")
    result = runner.invoke(app, ["ingest", str(traffic), "--out", str(tmp_path / "data"), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output.strip().splitlines()[-1])
    assert (counts["read"], counts["accepted"], counts["quarantined"]) == (1, 1, 0)


def test_init_writes_the_config_the_readme_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert any("characterflywheel init flywheel.toml" in block for block in blocks("bash"))
    result = runner.invoke(app, ["init", "flywheel.toml"])
    assert result.exit_code == 0, result.output
    config = load_config("flywheel.toml", overrides=["generation.temperature=0.5"])
    assert config.name == "flywheel" and config.generation.temperature == 0.5


def test_the_gateway_client_example_runs_against_a_served_gateway(tmp_path: Path) -> None:
    from characterflywheel.deploy.serving import running_gateway
    from characterflywheel.pipeline import build_gateway

    (example,) = [block for block in blocks("python") if "openai.OpenAI" in block]
    gateway = build_gateway(load_config(preset="tiny"), tmp_path / "serve")
    with running_gateway(gateway) as served:
        address = served.base_url.removeprefix("http://").removesuffix("/v1")
        namespace: dict = {}
        exec(compile(example.replace("127.0.0.1:8000", address), "README.md", "exec"), namespace)
        assert namespace["reply"].choices[0].message.content
    logged = [json.loads(line) for line in (tmp_path / "serve" / "traffic.jsonl").read_text().splitlines()]
    (conversation,) = [c for c in logged if c["conversation_id"] == "c-17"]
    assert conversation["character_id"] == "captain-saltbeard" and conversation["user_id"] == "u-3"
    assert conversation["messages"][-1]["signals"]["thumbs"] == "up"
