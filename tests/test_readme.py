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


def team_traffic(folder: Path, conversations: int = 40) -> None:
    """The team's logged traffic: real chit-chat in the traffic schema, spread over the shipped characters."""
    from characterflywheel.characters import load_characters
    from characterflywheel.data import iter_chitchat_conversations

    characters = [character.id for character in load_characters()]
    folder.mkdir()
    with (folder / "part-0.jsonl").open("w", encoding="utf-8") as out:
        for index, conversation in enumerate(iter_chitchat_conversations(limit=conversations, two_speaker_only=True)):
            record = conversation.model_dump(mode="json", exclude_none=True)
            record.update(user_id=f"u-{index}", character_id=characters[index % len(characters)])
            out.write(json.dumps(record) + "\n")


def fill_labels(people: Path, stage: str) -> int:
    """Two annotators label every exported task of ``stage`` (the first reply, a 4 of 5)."""
    tasks = [json.loads(line) for line in (people / "gen-1" / stage / "annotation_tasks.jsonl").read_text().splitlines()]
    with (people / "gen-1" / stage / "annotations.jsonl").open("w", encoding="utf-8") as out:
        for task in tasks:
            for annotator in ("ann-1", "ann-2"):
                label = {"preferred": 0} if task["kind"] == "pairwise" else {"rating": 4}
                out.write(json.dumps(task | {"annotator_id": annotator, "label": label}) + "\n")
    return len(tasks)


def test_the_production_commands_run_from_init_to_a_promoted_generation(tmp_path: Path, monkeypatch) -> None:
    """The README's production path on the tiny preset: init, run (waits for labels), fill, run (waits for the
    evaluation's labels, then for the A/B window), serve the window's log, run: generation 1 promoted."""
    monkeypatch.chdir(tmp_path)
    commands = next(block for block in blocks("bash") if "environment.kind" in block)
    assert "characterflywheel init team.toml" in commands and "characterflywheel run -c team.toml" in commands
    assert runner.invoke(app, ["init", "team.toml", "--preset", "tiny"]).exit_code == 0
    team_traffic(tmp_path / "logs")
    toml = (tmp_path / "team.toml").read_text(encoding="utf-8")
    toml = toml.replace('traffic = []', 'traffic = ["logs/"]').replace('kind = "simulated"', 'kind = "production"')
    # Test-only settings: every gate open, so that the window is served whatever the tiny child learned.
    open_gates = {"min_win_rate_vs_parent": "0.0", "max_violation_increase": "1.0", "max_following_decrease": "1.0",
                  "max_user_signal_win_rate": "1.0", "forbid_style_artifacts": "false"}
    for key, value in open_gates.items():
        toml, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", toml, flags=re.M)
        assert found == 1, key
    (tmp_path / "team.toml").write_text(toml, encoding="utf-8")
    run = ["run", "-c", "team.toml", "--generations", "1"]
    people = tmp_path / "runs" / "team" / "people"  # the run is named after its config file

    waiting = runner.invoke(app, run)
    assert waiting.exit_code == 3, waiting.output
    assert "gen-1/annotate/annotations.jsonl" in waiting.output.replace("\n", "")
    assert fill_labels(people, "annotate") > 0

    waiting = runner.invoke(app, run)
    assert waiting.exit_code == 3 and "gen-1/evaluate/annotations.jsonl" in waiting.output.replace("\n", ""), waiting.output
    fill_labels(people, "evaluate")

    waiting = runner.invoke(app, run)
    assert waiting.exit_code == 3 and "arms.json" in waiting.output, waiting.output
    arms = json.loads((people / "gen-1" / "deploy" / "arms.json").read_text())["arms"]
    assert [arm["name"] for arm in arms] == ["champion", "challenger"]
    window = people / "gen-1" / "deploy" / "traffic"
    window.mkdir(parents=True)
    with (window / "part-0.jsonl").open("w", encoding="utf-8") as out:  # the challenger's users talk longer
        for user in range(40):
            arm = arms[user % 2]
            turns = 1 if arm["name"] == "champion" else 3
            messages = [message for turn in range(turns) for message in (
                {"role": "user", "content": f"tell me more, part {turn}"},
                {"role": "assistant", "content": "Gladly, here is more.",
                 "signals": {"continued": turn + 1 < turns, "thumbs": None}})]
            out.write(json.dumps({"conversation_id": f"w-{user}", "user_id": f"w-{user}", "character_id": "captain-saltbeard",
                                  "model_version": arm["model_version"], "arm": arm["name"],
                                  "started_at": "2026-11-30T10:00:00Z", "messages": messages}) + "\n")

    done = runner.invoke(app, run)
    assert done.exit_code == 0, done.output
    decision = json.loads((tmp_path / "runs" / "team" / "gen-1" / "deploy" / "decision.json").read_text())
    assert decision["promoted"] and decision["champion_version"] == "gen-1", decision
