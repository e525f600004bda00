"""The production environment: work for people goes out as files, the run waits (exit code 3), and what
comes back is read row by row with quarantine and counts that reconcile. No network, no model."""

from __future__ import annotations

import gzip
import json
import re
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from characterflywheel import artifacts
from characterflywheel.cli import app
from characterflywheel.config import ArmConfig, Config, ConfigError, load_config
from characterflywheel.curate.annotate import annotate, build_tasks
from characterflywheel.curate.settings import CurateConfig
from characterflywheel.data import ingest, read_conversations
from characterflywheel.data.annotation import Annotation, AnnotationTask, read_tasks
from characterflywheel.data.jsonl import read_jsonl
from characterflywheel.deploy.serving import running_app
from characterflywheel.production import (
    IMPORT_REPORT_FILE,
    JUDGE_FILE,
    JUDGE_REPORT_FILE,
    QUARANTINE_FILE,
    PeopleFolderError,
    ProductionEnvironment,
    WaitingForPeople,
)

runner = CliRunner()
HELLO = [{"role": "system", "content": "You are Ann, a pirate."}, {"role": "user", "content": "hey"}]


def production_config(tmp_path: Path, *overrides: str) -> Config:
    return load_config(preset="tiny", overrides=[f"runs_dir={tmp_path / 'runs'}", "environment.kind=production",
                                                 *overrides])


def some_tasks() -> list[AnnotationTask]:
    base = {"character_id": "pirate-ann", "messages": HELLO, "prompt_id": "p-1"}
    return [AnnotationTask(task_id="p-1/pair-0", kind="pairwise", responses=["Arr!", "Hello."],
                           sources=["logged", "candidate-0"], **base),
            AnnotationTask(task_id="p-1/rate-0", kind="rating", responses=["Arr!"], sources=["logged"], **base),
            AnnotationTask(task_id="p-1/pair-1", kind="pairwise", responses=["Ahoy.", "Arr!"],
                           sources=["candidate-1", "logged"], **base)]


def labelled(task: AnnotationTask, annotator: str, label: dict, **changes: object) -> str:
    row = task.model_dump(mode="json") | {"annotator_id": annotator, "label": label} | changes
    return json.dumps(row)


def environment(tmp_path: Path, said: list[str], *overrides: str) -> ProductionEnvironment:
    return ProductionEnvironment(production_config(tmp_path, *overrides), config_args=["--preset", "tiny"],
                                 say=said.append)


# --------------------------------------------------------------------------- annotations


def test_annotations_wait_for_people_then_good_rows_go_on_and_bad_ones_are_quarantined(tmp_path: Path) -> None:
    said: list[str] = []
    env = environment(tmp_path, said)
    env.enter_stage(1, "annotate")
    tasks = some_tasks()
    folder = tmp_path / "runs" / "tiny" / "people" / "gen-1" / "annotate"
    with pytest.raises(WaitingForPeople) as waiting:
        env.fill_annotations(tasks)
    message = str(waiting.value)
    assert str(folder / artifacts.ANNOTATION_TASKS) in message and str(folder / artifacts.ANNOTATIONS) in message
    assert "resume: characterflywheel run --preset tiny" in message
    assert "3 annotation tasks (2 pairwise, 1 rating)" in message
    assert waiting.value.path == folder / artifacts.ANNOTATIONS and waiting.value.generation == 1
    assert [task.task_id for task in read_tasks(folder / artifacts.ANNOTATION_TASKS)] == [task.task_id for task in tasks]
    with pytest.raises(WaitingForPeople):  # still nothing filled: still waiting
        env.fill_annotations(tasks)

    pair, rate, other = tasks
    dropped_extras = {k: v for k, v in json.loads(labelled(rate, "a1", {"rating": 4})).items()
                      if k not in ("prompt_id", "sources")}
    lines = [
        labelled(pair, "a1", {"preferred": 0}),                               # 1 good
        labelled(pair, "a2", {"preferred": 1}),                               # 2 good
        json.dumps(dropped_extras),                                           # 3 good: a tool dropped the extras
        "",                                                                   # 4 blank: not a row
        '{"task_id": "p-1/pair-0",',                                          # 5 not JSON
        labelled(pair, "a3", {"preferred": 0}, task_id="p-9/pair-0"),         # 6 a task never exported
        labelled(pair, "a3", {"rating": 3}),                                  # 7 a label of the wrong kind
        labelled(rate, "a2", {"rating": 6}),                                  # 8 out of range
        labelled(pair, "a4", {"preferred": True}),                            # 9 not a strict integer
        labelled(pair, "a1", {"preferred": 1}),                               # 10 a1 labelled it on line 1
        labelled(other, "a1", {"preferred": 0}, responses=["Ahoy!", "Arr!"]),  # 11 the task was edited
        json.dumps({k: v for k, v in json.loads(labelled(other, "x", {"preferred": 0})).items()
                    if k != "annotator_id"}),                                 # 12 no annotator
        "[1, 2]",                                                             # 13 not an object
        labelled(other, "a2", {"preferred": 0}).replace('"preferred": 0', '"preferred": NaN'),  # 14 NaN
        labelled(other, "a2", {"preferred": 1}),                              # 15 good
    ]
    filled = folder / artifacts.ANNOTATIONS
    filled.write_text("\n".join(lines) + "\n")
    accepted = env.fill_annotations(tasks)

    assert [(a.task_id, a.annotator_id) for a in accepted] == [
        ("p-1/pair-0", "a1"), ("p-1/pair-0", "a2"), ("p-1/rate-0", "a1"), ("p-1/pair-1", "a2")]
    assert accepted[2].model_extra["prompt_id"] == "p-1"  # restored from the exported task
    quarantined = read_jsonl(folder / QUARANTINE_FILE)
    assert [(row["line"], row["field"]) for row in quarantined] == [
        (5, "<record>"), (6, "task_id"), (7, "label"), (8, "label.rating"), (9, "label.preferred"),
        (10, "annotator_id"), (11, "responses"), (12, "annotator_id"), (13, "<record>"), (14, "<record>")]
    assert all(row["file"] == str(filled) and row["raw"] == lines[row["line"] - 1] for row in quarantined)
    assert "on line 1" in quarantined[5]["reason"] and "not one of the exported tasks" in quarantined[1]["reason"]
    report = env.imports[-1]
    assert (report.read, report.accepted, report.quarantined, report.blank_lines) == (14, 4, 10, 1)
    assert report.read == report.accepted + report.quarantined
    assert (report.tasks_labelled, report.tasks_exported, report.annotators) == (3, 3, 2)
    assert json.loads((folder / "annotations.report.json").read_text())["quarantined"] == 10
    assert f"quarantined {filled}:5: <record>: not valid JSON" in said[0]
    assert said[-1].startswith(f"annotations {filled}: read 14 = accepted 4 + quarantined 10")
    # What the loop's own check (run_annotate) makes of the filler's rows: every one fits a task.
    assert len(annotate(tasks, env.fill_annotations)) == 4


def test_a_rerun_rebuilds_the_same_tasks_and_imports_against_the_exported_file(tmp_path: Path) -> None:
    records = [{"prompt_id": f"p-{i}", "character_id": "pirate-ann", "prompt": HELLO, "reply": "Arr!",
                "conversation_id": f"c-{i}"} for i in range(4)]
    candidates = {f"p-{i}": ["Hello.", "Ahoy there.", "Arr!"] for i in range(4)}
    settings = CurateConfig()
    first, again = build_tasks(records, candidates, settings, seed=3), build_tasks(records, candidates, settings, seed=3)
    assert [t.model_dump() for t in first] == [t.model_dump() for t in again]  # seeded: the same tasks

    env = environment(tmp_path, [])
    env.enter_stage(2, "annotate")
    with pytest.raises(WaitingForPeople) as waiting:
        env.fill_annotations(first)
    exported = waiting.value.path.parent / artifacts.ANNOTATION_TASKS
    written = exported.read_bytes()
    with pytest.raises(WaitingForPeople):
        env.fill_annotations(again)
    assert exported.read_bytes() == written  # never rewritten: people may be labelling it

    changed = [again[0].model_copy(update={"responses": ["Hi.", "Arr!"]}), *again[1:]]
    with pytest.raises(PeopleFolderError, match=rf"{exported}:1: responses: task 'p-0/pair-0' differs"):
        env.fill_annotations(changed)
    with pytest.raises(PeopleFolderError, match=rf"{exported}:{len(again)}: <record>: {len(again)} tasks exported, "
                                                rf"{len(again) - 1} rebuilt"):
        env.fill_annotations(again[:-1])


def test_a_filled_file_with_no_usable_row_is_an_error_not_an_empty_generation(tmp_path: Path) -> None:
    env = environment(tmp_path, [])
    env.enter_stage(1, "evaluate")
    tasks = some_tasks()
    with pytest.raises(WaitingForPeople) as waiting:
        env.fill_annotations(tasks)
    waiting.value.path.write_text(labelled(tasks[0], "a1", {"rating": 2}) + "\n")
    with pytest.raises(PeopleFolderError, match="no usable annotation .1 rows read, 1 quarantined"):
        env.fill_annotations(tasks)


def test_each_stage_that_asks_for_labels_gets_a_folder_of_its_own(tmp_path: Path) -> None:
    env = environment(tmp_path, [])
    people = tmp_path / "runs" / "tiny" / "people"
    tasks = some_tasks()
    outside = env.stage_folder(tasks)  # outside the loop: keyed by the tasks
    assert outside.parent == people and outside.name.startswith("tasks-") and env.stage_folder(tasks) == outside
    assert env.stage_folder(tasks[:1]) != outside
    env.enter_stage(3, "annotate")
    assert env.stage_folder(tasks) == people / "gen-3" / "annotate"
    env.enter_stage(3, "evaluate")
    assert env.stage_folder(tasks) == people / "gen-3" / "evaluate"
    custom = environment(tmp_path, [], f"environment.people_dir={tmp_path / 'shared'}")
    custom.enter_stage(1, "annotate")
    assert custom.stage_folder(tasks) == tmp_path / "shared" / "gen-1" / "annotate"


# --------------------------------------------------------------------------- the LLM judge as annotator


@pytest.fixture
def judge_url() -> Iterator[tuple[str, list[dict]]]:
    """A stub OpenAI-compatible judge on 127.0.0.1 preferring (and rating up) the reply with "Arr"
    in either position; yields its base URL and the requests it got."""
    asked: list[dict] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict:
        body = await request.json()
        asked.append(body)
        prompt = body["messages"][-1]["content"]
        reply_a = re.search(r"<reply_a>\n(.*?)\n</reply_a>", prompt, re.DOTALL)
        if reply_a:
            answer = f"Answer: {'A' if 'Arr' in reply_a.group(1) else 'B'}"
        else:
            answer = f"Rating: {5 if 'Arr' in prompt.split('<reply>')[1] else 2}"
        return {"id": "stub", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}]}

    with running_app(app, name="stub judge") as base_url:
        yield base_url, asked


def judged_by(annotations: list[Annotation]) -> list[tuple[str, str, int | None]]:
    return [(a.task_id, a.annotator_id, a.label.preferred if a.kind == "pairwise" else a.label.rating)
            for a in annotations]


def test_an_llm_judge_fills_the_tasks_at_once_and_is_asked_once(tmp_path: Path, judge_url) -> None:
    url, asked = judge_url
    said: list[str] = []
    env = environment(tmp_path, said, "environment.annotators=llm_judge", f"llm_judge.base_url={url}",
                      "llm_judge.model=stub-judge")
    env.enter_stage(1, "annotate")
    tasks = some_tasks()
    filled = env.fill_annotations(tasks)  # no WaitingForPeople: nobody to wait for
    assert judged_by(filled) == [("p-1/pair-0", "llm:stub-judge", 0), ("p-1/rate-0", "llm:stub-judge", 5),
                                 ("p-1/pair-1", "llm:stub-judge", 1)]
    folder = tmp_path / "runs" / "tiny" / "people" / "gen-1" / "annotate"
    assert not (folder / artifacts.ANNOTATIONS).exists() and len(asked) == 5  # both orders of the two pairs, one rating
    assert [a["task_id"] for a in read_jsonl(folder / JUDGE_FILE)] == ["p-1/pair-0", "p-1/rate-0", "p-1/pair-1"]
    report = json.loads((folder / JUDGE_REPORT_FILE).read_text())
    assert (report["model"], report["labelled"], report["position_disagreements"]) == ("stub-judge", 3, 0)
    assert "3 of 3 tasks labelled" in said[-1]
    # The loop's own check passes, and a re-run (the stage redone after a stop) reads the labels back.
    assert judged_by(annotate(tasks, env.fill_annotations)) == judged_by(filled) and len(asked) == 5
    changed = environment(tmp_path, [], "environment.annotators=llm_judge", f"llm_judge.base_url={url}",
                          "llm_judge.model=stub-judge", "llm_judge.rubric='Short replies win.'")
    changed.enter_stage(1, "annotate")
    changed.fill_annotations(tasks)
    assert len(asked) == 10 and "Short replies win." in asked[-1]["messages"][0]["content"]  # a new rubric: asked again


def test_both_judges_at_once_then_waits_for_people_and_reports_the_agreement(tmp_path: Path, judge_url) -> None:
    url, asked = judge_url
    said: list[str] = []
    env = environment(tmp_path, said, "environment.annotators=both", f"llm_judge.base_url={url}",
                      "llm_judge.model=stub-judge")
    env.enter_stage(2, "evaluate")
    tasks = some_tasks()
    with pytest.raises(WaitingForPeople) as waiting:
        env.fill_annotations(tasks)
    folder = waiting.value.path.parent
    assert f"judged: {folder / JUDGE_FILE}" in str(waiting.value) and len(read_jsonl(folder / JUDGE_FILE)) == 3
    with pytest.raises(WaitingForPeople):  # people still busy: the judge is not asked again
        env.fill_annotations(tasks)
    assert len(asked) == 5

    pair, rate, other = tasks
    waiting.value.path.write_text("\n".join([labelled(pair, "a1", {"preferred": 0}),
                                             labelled(other, "a1", {"preferred": 0}),
                                             labelled(rate, "a1", {"rating": 5})]) + "\n")
    filled = env.fill_annotations(tasks)
    assert judged_by(filled) == [("p-1/pair-0", "a1", 0), ("p-1/pair-1", "a1", 0), ("p-1/rate-0", "a1", 5),
                                 ("p-1/pair-0", "llm:stub-judge", 0), ("p-1/rate-0", "llm:stub-judge", 5),
                                 ("p-1/pair-1", "llm:stub-judge", 1)]
    agreement = json.loads((folder / IMPORT_REPORT_FILE).read_text())["llm_judge_agreement"]
    assert agreement["pairwise_tasks"] == 2 and agreement["pairwise_agreement"] == 0.5  # a1 chose "Ahoy." on pair-1
    assert agreement["rating_tasks"] == 1 and agreement["rating_agreement"] == 1.0
    assert said[-1].startswith("LLM judge vs people on 2 pairwise and 1 rating tasks: pairwise_agreement 0.50")


def test_the_llm_judge_needs_a_server_that_answers(tmp_path: Path) -> None:
    assert load_config().environment.annotators == "people"  # the default: nothing changes for a team
    with pytest.raises(ConfigError, match="llm_judge.base_url: empty, but environment.annotators = llm_judge"):
        environment(tmp_path, [], "environment.annotators=llm_judge")
    with pytest.raises(ConfigError, match="llm_judge.model: empty, but environment.annotators = both"):
        environment(tmp_path, [], "environment.annotators=both", "llm_judge.base_url=http://127.0.0.1:9/v1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"  # nothing listens there
    env = environment(tmp_path, [], "environment.annotators=llm_judge", f"llm_judge.base_url={down}",
                      "llm_judge.model=stub-judge")
    with pytest.raises(ConfigError, match=rf"llm_judge.base_url: LLM judge {re.escape(down)} \(model 'stub-judge'\)"):
        env.fill_annotations(some_tasks())


# --------------------------------------------------------------------------- traffic


def window_lines(arms: tuple[str, ...], users: int, tag: str) -> list[str]:
    return [json.dumps({"conversation_id": f"{tag}-{arm}-{user}", "user_id": f"u-{user}", "character_id": "pirate-ann",
                        "model_version": arm, "arm": arm, "started_at": "2026-11-24T10:00:00Z",
                        "messages": [{"role": "user", "content": "hey"}, {"role": "assistant", "content": "Arr!"}]})
            for arm in arms for user in range(users)]


ARMS = [ArmConfig(name="champion", model="runs/m/base", model_version="gen-0"),
        ArmConfig(name="challenger", model="runs/m/child's", model_version="gen-1", weight=0.5)]


def test_traffic_waits_with_the_arms_to_serve_then_copies_the_window_log(tmp_path: Path) -> None:
    said: list[str] = []
    env = environment(tmp_path, said)
    cfg = env.config
    out_dir = tmp_path / "deploy.partial"
    deploy = tmp_path / "runs" / "tiny" / "people" / "gen-1" / "deploy"
    traffic_dir = deploy / "traffic"
    with pytest.raises(WaitingForPeople) as waiting:
        env.collect_traffic(cfg, ARMS, out_dir, 1, scale=2.0)
    message = str(waiting.value)
    assert f"put the window's log in {traffic_dir}/" in message and str(deploy / "arms.json") in message
    assert "champion (gen-0), challenger (gen-1), 2 times as long" in message
    assert message.splitlines()[-1] == "  resume: characterflywheel run --preset tiny"
    arms_file = json.loads((deploy / "arms.json").read_text())
    assert [ArmConfig(**arm) for arm in arms_file["arms"]] == ARMS and arms_file["window_scale"] == 2.0
    # The printed serve command is one the CLI accepts, and serves exactly these arms.
    serve = shlex.split(next(line for line in message.splitlines() if "serve:" in line).split("serve:", 1)[1])
    assert serve[:5] == ["characterflywheel", "serve", "--preset", "tiny", "--log-dir"] and serve[5] == str(traffic_dir)
    assert load_config(preset="tiny", overrides=[serve[7]]).serve.arms == ARMS

    traffic_dir.mkdir(parents=True)
    (traffic_dir / "events.jsonl").write_text('{"kind": "exchange"}\n')  # a gateway still serving
    with pytest.raises(WaitingForPeople, match="events.jsonl but no traffic log yet"):
        env.collect_traffic(cfg, ARMS, out_dir, 1)

    first = window_lines(("champion", "challenger"), 5, "a")
    (traffic_dir / "traffic.jsonl").write_text("\n".join([*first, '{"broken": ']))  # no final newline
    parquet_source = tmp_path / "b.jsonl"
    parquet_source.write_text("\n".join(window_lines(("champion", "challenger"), 3, "b")) + "\n")
    ingest([parquet_source], tmp_path / "b", progress=False)
    (traffic_dir / "part-0001.parquet").write_bytes((tmp_path / "b" / "conversations.parquet").read_bytes())
    (traffic_dir / "_part-0002.jsonl").write_text("half a li")  # a part still being copied in
    (traffic_dir / "part-0003.jsonl.gz").write_bytes(gzip.compress(
        ("\n".join(window_lines(("champion",), 2, "c")) + "\n").encode()))
    metrics = env.collect_traffic(cfg, ARMS, out_dir, 1)

    assert metrics == {"traffic_parts": 3.0, "traffic_lines": 19.0, "window_from_data_traffic": 0.0}
    parts = json.loads((out_dir / "traffic_parts.json").read_text())["parts"]
    assert [(Path(p["part"]).name, p["format"], p["first_line"], p["last_line"]) for p in parts] == [
        ("part-0001.parquet", "parquet", 1, 6), ("part-0003.jsonl.gz", "jsonl.gz", 7, 8),
        ("traffic.jsonl", "jsonl", 9, 19)]
    report = ingest([out_dir / "traffic.jsonl"], out_dir / "ingested", progress=False)
    assert (report.read, report.accepted, report.quarantined) == (19, 18, 1)
    assert read_jsonl(out_dir / "ingested" / "quarantine.jsonl")[0]["line"] == 19
    assert {c.arm for c in read_conversations(out_dir / "ingested" / "conversations.parquet")} == {
        "champion", "challenger"}
    assert "19 lines from 3 part(s)" in said[-1]

    (traffic_dir / "part-0004.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n' * 50)[:-12])  # cut short
    with pytest.raises(PeopleFolderError, match=r"part-0004.jsonl.gz: <file>: cannot be read to the end"):
        env.collect_traffic(cfg, ARMS, tmp_path / "again.partial", 1)


def test_generation0_takes_the_team_traffic_as_its_window_unless_told_to_serve(tmp_path: Path) -> None:
    team = tmp_path / "team.jsonl"
    team.write_text("\n".join(window_lines(("prod",), 4, "t")) + "\n")
    arms = ARMS[:1]
    env = environment(tmp_path, [], f"data.traffic=[{json.dumps(str(team))}]")
    metrics = env.collect_traffic(env.config, arms, tmp_path / "g0", 0)
    assert metrics["window_from_data_traffic"] == 1.0 and metrics["traffic_lines"] == 4.0
    assert (tmp_path / "g0" / "traffic.jsonl").read_bytes() == team.read_bytes()
    with pytest.raises(WaitingForPeople):  # a later generation's window is always served
        env.collect_traffic(env.config, arms, tmp_path / "g1", 1)
    served = environment(tmp_path / "other", [], f"data.traffic=[{json.dumps(str(team))}]",
                         "environment.generation0_window=serve")
    with pytest.raises(WaitingForPeople, match="generation 0 deploy"):
        served.collect_traffic(served.config, arms, tmp_path / "g0-served", 0)


def test_production_has_no_hidden_world(tmp_path: Path) -> None:
    env = environment(tmp_path, [])
    assert env.simulated is False and env.truth(HELLO, ["Arr!"]) is None and not hasattr(env, "truth_prompts")


# --------------------------------------------------------------------------- config and CLI


def test_the_environment_section_defaults_to_the_simulated_world() -> None:
    default = load_config()
    assert default.environment.kind == "simulated" and default.environment.people_dir == ""
    with pytest.raises(ConfigError, match="environment.kind"):
        load_config(overrides=["environment.kind=cloud"])


def fake_flywheel(seen: list[object], then: str):
    def run_flywheel(cfg: Config, env: object, generations: int | None = None, notify: object = None,
                     starting: object = None) -> Path:
        seen.append(env)
        if then == "traffic":
            env.collect_traffic(cfg, ARMS[:1], cfg.run_dir() / "gen-0" / "deploy.partial", 0)  # type: ignore[attr-defined]
        raise typer.Exit(0)

    return run_flywheel


def test_run_in_production_says_what_people_must_do_and_exits_3(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    monkeypatch.setattr("characterflywheel.flywheel.run_flywheel", fake_flywheel(seen, "traffic"))
    args = ["run", "--preset", "tiny", "--set", f"runs_dir={tmp_path}", "--set", "environment.kind=production",
            "-n", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    assert isinstance(seen[0], ProductionEnvironment)
    assert "waiting for people: generation 0 deploy" in result.output and "Traceback" not in result.output
    traffic_dir = tmp_path / "tiny" / "people" / "gen-0" / "deploy" / "traffic"
    assert f"{traffic_dir}/" in result.output
    resume = shlex.join(["characterflywheel", "run", "--preset", "tiny", "--set", f"runs_dir={tmp_path}",
                         "--set", "environment.kind=production", "--generations", "2"])
    assert f"resume: {resume}" in result.output
    assert "serve.arms=[{name = " in result.output  # the TOML brackets survive rich markup


def test_demo_stays_simulated_whatever_the_config_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    monkeypatch.setattr("characterflywheel.flywheel.run_flywheel", fake_flywheel(seen, "stop"))
    production = ["--set", f"runs_dir={tmp_path}", "--set", "environment.kind=production"]
    assert runner.invoke(app, ["demo", "--preset", "tiny", *production]).exit_code == 0
    assert runner.invoke(app, ["run", "--preset", "tiny", "--set", f"runs_dir={tmp_path}"]).exit_code == 0
    assert [env.simulated for env in seen] == [True, True]  # type: ignore[attr-defined]


def test_generation0_through_the_real_loop_waits_then_resumes_from_the_deploy_stage(tmp_path: Path) -> None:
    from characterflywheel.flywheel import run_generation_zero
    from characterflywheel.pipeline import StageRunner

    cfg = production_config(tmp_path, "tracking.registry_copies_models=false")
    deploy = cfg.run_dir() / "gen-0" / "deploy"
    with pytest.raises(WaitingForPeople) as waiting:
        run_generation_zero(cfg, ProductionEnvironment(cfg), StageRunner(cfg, 0))
    assert not deploy.exists()  # the waiting stage left no manifest: a re-run redoes it
    arms = json.loads((waiting.value.path.parent / "arms.json").read_text())["arms"]
    assert [arm["name"] for arm in arms] == ["champion"] and arms[0]["model_version"] == "gen-0"
    waiting.value.path.mkdir(parents=True)
    (waiting.value.path / "traffic.jsonl").write_text("\n".join(window_lines(("champion",), 6, "w")) + "\n")

    stage = StageRunner(cfg, 0)
    result = run_generation_zero(cfg, ProductionEnvironment(cfg), stage)
    assert [r.name for r in stage.results if r.skipped] == ["seed", "ingest", "register"]
    assert not result.skipped and result.manifest["metrics"]["traffic_accepted"] == 6.0
    assert (deploy / "ingested" / "conversations.parquet").is_file() and (deploy / "decision.json").is_file()


def test_the_loop_tells_the_environment_which_stage_asks(tmp_path: Path) -> None:
    from characterflywheel.flywheel import tell_environment
    from characterflywheel.runs import StageContext

    env = environment(tmp_path, [])
    tell_environment(env, StageContext("evaluate", 2, tmp_path / "out", tmp_path / "work", {}, {}))
    assert env.stage_folder(some_tasks()) == tmp_path / "runs" / "tiny" / "people" / "gen-2" / "evaluate"
    tell_environment(object(), StageContext("annotate", 2, tmp_path, tmp_path, {}, {}))  # others need not know


def test_annotators_do_not_see_which_reply_was_served_and_the_import_restores_it(tmp_path: Path) -> None:
    env = environment(tmp_path, [])
    env.enter_stage(1, "annotate")
    tasks = some_tasks()
    with pytest.raises(WaitingForPeople) as waiting:
        env.fill_annotations(tasks)
    folder = waiting.value.path.parent
    shown = [json.loads(line) for line in (folder / artifacts.ANNOTATION_TASKS).read_text().splitlines()]
    assert shown and all("sources" not in task and task["prompt_id"] == "p-1" for task in shown)
    (folder / artifacts.ANNOTATIONS).write_text("\n".join(json.dumps(task | {"annotator_id": "a1", "label": label})
                                                for task, label in zip(shown, ({"preferred": 0}, {"rating": 4},
                                                                               {"preferred": 1}))) + "\n")
    annotations = env.fill_annotations(tasks)
    assert [a.model_extra["sources"] for a in annotations] == [t.model_extra["sources"] for t in tasks]
