import json
import re
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from characterflywheel.cli import app
from characterflywheel.config import load_config

runner = CliRunner()


def test_init_writes_a_commented_valid_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "pirates.toml"
    result = runner.invoke(app, ["init", str(path), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert text.count("\n# ") > 10
    assert tomllib.loads(text)["name"] == "pirates"  # named after the file, as the help says, not the preset
    assert load_config(path) == load_config(preset="tiny", overrides=["name=pirates"])
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



def traffic_file(path: Path, days: tuple[str, str], returning: int) -> Path:
    """Two arms of 20 users on ``days[0]``; the first ``returning`` of each arm come back on ``days[1]``."""
    lines = []
    for arm in ("control", "B"):
        for user in range(20):
            for day in days[: 2 if user < returning else 1]:
                lines.append(json.dumps({
                    "conversation_id": f"{arm}-{user}-{day}", "user_id": f"{arm}-{user}", "character_id": "pirate-ann",
                    "model_version": arm, "arm": arm, "started_at": f"{day}T10:00:00Z",
                    "messages": [{"role": "user", "content": "hey"}, {"role": "assistant", "content": "Arr!"}] * (1 + user % 3)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ab_reads_a_pre_period_for_cuped(tmp_path: Path) -> None:
    now = traffic_file(tmp_path / "now.jsonl", ("2026-11-24", "2026-11-25"), returning=8)
    before = traffic_file(tmp_path / "before.jsonl", ("2026-11-17", "2026-11-18"), returning=8)
    result = runner.invoke(app, ["ab", str(now), "--pre-period", str(before), "--out", str(tmp_path / "ab"),
                                 "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    ab = json.loads((tmp_path / "ab" / "ab.json").read_text())
    depth = ab["challengers"]["B"]["depth"]
    assert ab["cuped"] and depth["primary"] == "cuped" and depth["cuped"]["users_with_history"] == 40
    plain = runner.invoke(app, ["ab", str(now), "--out", str(tmp_path / "plain"), "--preset", "tiny"])
    assert plain.exit_code == 0 and not json.loads((tmp_path / "plain" / "ab.json").read_text())["cuped"]


def flywheel_window(path: Path) -> Path:
    """A window as the flywheel serves it: champion and challenger arms, no arm named control."""
    text = traffic_file(path, ("2026-11-24", "2026-11-25"), returning=8).read_text()
    path.write_text(text.replace('"arm": "control"', '"arm": "champion"').replace('"arm": "B"', '"arm": "challenger"'))
    return path


def test_ab_on_a_flywheel_window_reads_the_challenger_against_the_champion(tmp_path: Path) -> None:
    window = flywheel_window(tmp_path / "traffic.jsonl")
    result = runner.invoke(app, ["ab", str(window), "--out", str(tmp_path / "ab"), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    ab = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert set(ab["challengers"]) == {"challenger"}
    wrong = runner.invoke(app, ["ab", str(window), "--out", str(tmp_path / "wrong"), "--control", "control"])
    assert wrong.exit_code == 1 and "Traceback" not in wrong.output
    assert "no control arm 'control'" in wrong.output
    assert "challenger, champion" in wrong.output and "--control" in wrong.output


def test_init_names_the_run_after_its_file_and_refuses_a_path_that_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "pirates.toml"
    assert runner.invoke(app, ["init", str(path)]).exit_code == 0
    assert load_config(path).name == "pirates"
    forced = runner.invoke(app, ["init", "--force", "true"])
    assert forced.exit_code == 1 and "ends in .toml" in forced.output
    assert not Path("true").exists()


def test_a_folder_or_missing_file_as_config_is_one_line(tmp_path: Path) -> None:
    for target, words in ((tmp_path, "a folder, not a config file"), (tmp_path / "nope.toml", "no such config file")):
        result = runner.invoke(app, ["demo", "-c", str(target)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert [line for line in result.output.splitlines() if line.strip()] == [f"error: {target}: {words}"]


def test_help_shows_flags_without_a_value_and_speaks_to_users() -> None:
    top = runner.invoke(app, ["--help"])
    assert "run the CharacterFlywheel loop" in top.output and "thin wiring" not in top.output
    init_help = runner.invoke(app, ["init", "--help"])
    assert "--force" in init_help.output and "<bool>" not in init_help.output
    serve_help = runner.invoke(app, ["serve", "--help"])
    assert "--host" in serve_help.output and "--port" in serve_help.output
    python_types = re.compile(r"<(list\[|str>|int>|float>|bool>|path>|Path>)")
    for command in [None, *(info.name or info.callback.__name__ for info in app.registered_commands)]:
        shown = runner.invoke(app, [*([command] if command else []), "--help"]).output
        assert not python_types.search(shown), f"{command or 'characterflywheel'} --help: {python_types.search(shown)[0]}"
    assert "--set KEY=VALUE" in serve_help.output
    assert "FILE" in runner.invoke(app, ["ab", "--help"]).output


def test_serve_binds_the_host_and_port_it_is_given(tmp_path: Path, monkeypatch) -> None:
    import uvicorn

    from characterflywheel import pipeline
    from characterflywheel.deploy import serving

    bound = []
    monkeypatch.setattr(pipeline, "build_gateway", lambda config, log_dir: "gateway")
    monkeypatch.setattr(serving, "create_app", lambda gateway: f"app of {gateway}")
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: bound.append((app, options["host"], options["port"])))
    chosen = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "9123", "--log-dir", str(tmp_path),
                                 "--preset", "tiny"])
    assert chosen.exit_code == 0, chosen.output
    defaults = runner.invoke(app, ["serve", "--log-dir", str(tmp_path), "--preset", "tiny"])
    assert defaults.exit_code == 0, defaults.output
    configured = load_config(preset="tiny").serve
    assert bound == [("app of gateway", "0.0.0.0", 9123),
                     ("app of gateway", configured.host, configured.port or 8000)]


def test_the_generations_table_fits_100_columns_and_names_the_champion() -> None:
    from rich.console import Console

    from characterflywheel.cli import generations_table

    def generation(number: int, promoted: bool, champion: str) -> dict:
        return {"generation": number, "model_version": f"gen-{number}", "served": True, "promoted": promoted,
                "champion_version": champion,
                "gates": {"passed": number != 3, "reasons": ["win rate 0.41 < 0.5"] if number == 3 else []},
                "offline": {"win_rate_vs_parent": {"value": 0.6123456, "lo": 0.5, "hi": 0.7, "n": 120}},
                "ab": {"breadth_lift": {"value": 0.01, "relative": 0.123456, "lo": -0.2, "hi": 0.4, "n": 300},
                       "depth_lift": {"value": 0.2, "relative": -0.0456, "lo": -0.3, "hi": 0.2, "n": 300},
                       "promoted": promoted, "reason": "A/B verdict inconclusive: bootstrap CI spans zero"},
                "truth": {"truth_set": {"child_vs_parent": {"diff": 0.0123, "lo": -0.01, "hi": 0.03, "n": 64}}}}

    summaries = [{"generation": 0, "model_version": "gen-0", "served": True, "promoted": False,
                  "champion_version": "gen-0"},
                 generation(1, True, "gen-1"), generation(2, True, "gen-2"), generation(3, False, "gen-2")]
    wide = Console(width=200, record=True)
    wide.print(generations_table(summaries))
    lines = wide.export_text().splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "champion: gen-2" in " ".join(lines)
    assert "FAIL" in " ".join(lines)  # the last generation's row is there, not cut off


def test_the_terminal_chat_ends_on_quit_without_sending_it(monkeypatch) -> None:
    from characterflywheel import cli

    lines = iter(["hello", "/quit", "never read"])
    monkeypatch.setattr(cli.console, "input", lambda prompt="": next(lines))
    sent = []
    cli._chat_loop(lambda history: sent.append([m["content"] for m in history]) or "hi!", [])
    assert sent == [["hello"]]


def test_progress_says_why_a_gate_failed_and_what_the_window_decided(tmp_path: Path) -> None:
    from characterflywheel.cli import _decision_lines
    from characterflywheel.evaluate.gates import GateCheck, GateDecision
    from characterflywheel.runs import StageResult

    (tmp_path / "gate").mkdir()
    GateDecision(passed=False, checks=[GateCheck("win_rate", 0.41, 0.5, False, "win rate 0.41 < 0.5")]).write(
        tmp_path / "gate" / "gates.json")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "decision.json").write_text(json.dumps(
        {"champion_model": "m", "champion_version": "gen-2", "challenger_version": "gen-2", "promoted": True,
         "reason": "the A/B found no harm"}))
    assert _decision_lines(StageResult("gate", tmp_path / "gate", {}, False)) == ["gate failed: win_rate: win rate 0.41 < 0.5"]
    assert _decision_lines(StageResult("deploy", tmp_path / "deploy", {}, False)) == [
        "gen-2 promoted: the A/B found no harm"]
    (tmp_path / "deploy" / "decision.json").write_text(json.dumps(
        {"champion_model": "m", "champion_version": "gen-1", "challenger_version": None, "promoted": False,
         "reason": "no window served: nothing would read it"}))
    assert _decision_lines(StageResult("deploy", tmp_path / "deploy", {}, False)) == [
        "no window served: nothing would read it"]
