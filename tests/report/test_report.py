"""The HTML report and the Markdown key table, from synthetic run directories."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from characterflywheel.report import ReportInputError, key_table_markdown, render_html, screenshot, write_report
from characterflywheel.report import data as rd
from characterflywheel.report import plots
from characterflywheel.report.html import find_chromium

EVIL = '<script>alert("x")</script>'


def fig(value: float, spread: float = 0.05, n: int = 120) -> dict[str, Any]:
    return {"value": value, "lo": round(value - spread, 6), "hi": round(value + spread, 6), "n": n}


def brief_schema_summary(generation: int, truth: bool) -> dict[str, Any]:
    """A summary in the documented schema (flat win-rate figures, ``if_rate``, simple style features)."""
    summary: dict[str, Any] = {
        "generation": generation, "model_version": f"gen-{generation}", "parent_version": f"gen-{generation - 1}",
        "served": generation != 2, "promoted": generation != 2, "champion_version": "gen-1",
        "data_counts": {"traffic_conversations": 120 * generation, "prompts": 800, "privacy_kept": 790,
                        "privacy_masked": 12, "privacy_dropped": 3, "diverse": 400, "curated": 200,
                        "annotations": 400, "sft": 150, "prefs": 120},
        "reward_models": {"pointwise": {"heldout_accuracy": 0.71, "ece": 0.05, "n": 80},
                          "user_signal": {"auc_continue": 0.6, "auc_thumbs": 0.58}},
        "offline": {"win_rate_vs_parent": fig(0.58), "win_rate_vs_reference": fig(0.5 + 0.05 * generation),
                    "annotator_win_rate_vs_parent": fig(0.55, n=40),
                    "if_rate": {"child": fig(0.6 + 0.05 * generation), "parent": fig(0.6)},
                    "violation_rate": {"child": fig(0.2 - 0.03 * generation), "parent": fig(0.2)}},
        "style": {"features": {"emoji": {"parent": 0.1, "child": 0.3, "reward_share": 0.02, "flagged": generation == 2},
                               "list": {"parent": 0.2, "child": 0.2, "reward_share": 0.01, "flagged": False}}},
        "history_bias": {"emoji": {"with_history": 0.4, "without_history": 0.1, "flag": False}},
        "gates": {"passed": generation != 2, "checks": [
            {"name": "win_rate_vs_parent", "value": 0.58, "threshold": 0.5, "passed": True, "reason": ""},
            {"name": "style", "value": 0.3, "threshold": 0.1, "passed": generation != 2,
             "reason": f"emoji flagged {EVIL}" if generation == 2 else ""}]},
        "ab": {"control": f"gen-{generation - 1}", "treatment": f"gen-{generation}",
               "breadth_lift": fig(0.03, 0.02, 400), "depth_lift": fig(0.1, 0.05, 400),
               "promoted": generation != 2, "reason": "A/B verdict ship"},
        "stage_seconds": {"curate": 30.2, "reward": 50.1, "herd": 120.0},
    }
    if truth:
        summary["truth"] = {"rm_score": {"parent": 0.1 * generation, "child": 0.1 * generation + 0.3},
                            "landscape_p_continue": {"parent": 0.41, "child": 0.41 + 0.01 * (generation != 2)}}
    return summary


def offline_report_schema_summary(generation: int) -> dict[str, Any]:
    """A summary as ``characterflywheel.summary`` copies the offline report: nested judges, style monitor."""
    return {
        "generation": generation, "model_version": f"gen-{generation}", "parent_version": "gen-0", "served": True,
        "promoted": True, "champion_version": f"gen-{generation}",
        "offline": {"win_rate_vs_parent": {"reward_model": fig(0.61), "annotators": fig(0.57, n=30)},
                    "win_rate_vs_reference": None,
                    "instruction_following": {"child": fig(0.7), "parent": fig(0.65), "child_minus_parent": fig(0.05)},
                    "violation_rate": {"child": fig(0.1), "parent": fig(0.12)}},
        "style": {"n": 50, "features": {"question": {"mean": fig(0.4), "parent_mean": fig(0.3), "share": 0.05,
                                                     "flagged": False}}},
        "history_bias": {"child": {"n": 50, "features": {"question": {"rate_present": fig(0.5),
                                                                      "rate_absent": fig(0.3), "mirrors": True}}}},
        "gates": {"passed": True, "checks": [], "reasons": []},
        # As characterflywheel.summary writes it: absolute value, relative lift, and the relative lift's CI.
        "ab": {"control": None, "treatment": f"gen-{generation}", "promoted": True, "reason": "ship",
               "breadth_lift": {"value": 0.02, "relative": 0.05, "lo": 0.01, "hi": 0.09, "n": 300, "mde": 0.11}},
    }


def make_run(root: Path, truth: bool, experiments: bool = True) -> Path:
    run = root / "run"
    summaries = [{"generation": 0, "model_version": "gen-0", "parent_version": None, "served": True,
                  "promoted": False, "champion_version": "gen-0", "data_counts": {"traffic_conversations": 120}},
                 brief_schema_summary(1, truth), brief_schema_summary(2, truth)]
    for summary in summaries:
        folder = run / f"gen-{summary['generation']}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(summary))
    if experiments:
        (run / "experiments").mkdir()
        (run / "experiments" / "grpo_vs_online_dpo.json").write_text(json.dumps({
            "name": "grpo_vs_online_dpo", "description": f"two trainers {EVIL}",
            "columns": ["method", "seed", "win rate", "note"],
            "rows": [["GRPO", 0, 0.61, EVIL], ["Online DPO", 0, 0.57, None]]}))
        (run / "experiments" / "broken.json").write_text("{not json")
    return run


def images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


def test_report_is_one_self_contained_page(tmp_path: Path) -> None:
    run = make_run(tmp_path, truth=True)
    before = {p for p in run.rglob("*")}
    path = write_report(run)
    assert path == run / "report.html"
    assert {p for p in run.rglob("*")} - before == {path}
    page = path.read_text(encoding="utf-8")
    sources = images(page)
    assert len(sources) >= 7
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', page, re.IGNORECASE)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    for generation in ("gen-0", "gen-1", "gen-2"):
        assert f"<td>{generation}</td>" in page
    # Every string from the JSON is escaped: the gate reason and the experiment's cell and description.
    assert page.count("&lt;script&gt;") >= 3
    assert 'alt="reward hacking"' in page
    assert "emoji flagged" in page and "FAIL" in page  # the gate decision with its reason
    assert "grpo_vs_online_dpo" in page and "<td>GRPO</td><td>0</td><td>0.610</td>" in page
    assert "Could not read" in page and "broken.json" in page  # a broken experiment file does not sink the page


def test_truth_view_only_for_simulated_runs(tmp_path: Path) -> None:
    simulated = render_html(make_run(tmp_path / "sim", truth=True, experiments=False))
    real = render_html(make_run(tmp_path / "real", truth=False, experiments=False))
    assert 'alt="reward hacking"' in simulated and "truth child" in simulated
    assert 'alt="reward hacking"' not in real and "truth child" not in real
    assert "no hidden landscape" in real
    assert len(images(simulated)) == len(images(real)) + 1


def test_offline_report_spelling_and_missing_sections(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "gen-1").mkdir(parents=True)
    (run / "gen-1" / "summary.json").write_text(json.dumps(offline_report_schema_summary(1)))
    (run / "gen-2").mkdir()
    (run / "gen-2" / "summary.json").write_text(json.dumps({}))  # generation taken from the folder name
    [one, two] = rd.load_summaries(run)
    assert rd.win_rate(one, "parent") == rd.Reading(0.61, 0.56, 0.66, 120)
    assert rd.win_rate(one, "parent", "annotators").n == 30
    assert rd.win_rate(one, "reference") is None
    assert rd.rate(one, "if").value == 0.7
    assert rd.style_features(one) == [rd.StyleFeature("question", 0.3, 0.4, 0.05, False)]
    assert rd.history_bias(one) == [rd.HistoryBiasFeature("question", 0.5, 0.3, True)]
    assert two["generation"] == 2 and rd.win_rate(two, "parent") is None
    page = write_report(run, tmp_path / "out" / "r.html").read_text()
    assert "<td>gen-2</td>" in page and "0.610 [0.560, 0.660] n=120" in page
    assert rd.lift(one, "breadth") == rd.Reading(0.05, 0.01, 0.09, 300, relative=True)
    assert "+5.0% [+1.0%, +9.0%] n=300" in page
    assert "Smallest lifts these arms detect (80 % power): breadth 11%" in page
    assert plots.reward_hacking([one, two]) is None and plots.ab_lifts([two]) is None
    assert plots.ab_lifts([one, two]).startswith("data:image/png;base64,")


def test_key_table_markdown(tmp_path: Path) -> None:
    run = make_run(tmp_path, truth=False, experiments=False)
    (run / "gen-1" / "summary.json").write_text(json.dumps(
        brief_schema_summary(1, truth=False) | {"model_version": "gen|1"}))
    summary = json.loads((run / "gen-1" / "summary.json").read_text())
    summary["offline"]["evidence_vs_parent"] = {"reward_model_z": 1.0, "user_signal_z": 2.5, "combined_z": 2.47, "n": 32}
    (run / "gen-1" / "summary.json").write_text(json.dumps(summary))
    lines = key_table_markdown(run).strip().splitlines()
    assert lines[0].startswith("| gen | model | parent | gates | served | promoted |")
    assert len(lines) == 2 + 3
    assert lines[2].startswith("| 0 | gen-0 | – | – | yes | – |")
    assert "gen\\|1" in lines[3] and "| 0.580 [0.530, 0.630] n=120 | +2.5 |" in lines[3]  # the evidence's z
    assert "+3.0% [+1.0%, +5.0%] n=400" in lines[3]  # lifts are relative, in % everywhere
    assert "| failed (1 of 2) | no | no |" in lines[4]
    # every row has the header's number of cells (escaped pipes do not split cells)
    assert {len(re.split(r"(?<!\\)\|", line)) for line in lines} == {len(re.split(r"(?<!\\)\|", lines[0]))}


def test_bad_summary_names_the_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "gen-0").mkdir(parents=True)
    (run / "gen-0" / "summary.json").write_text("[1, 2]")
    with pytest.raises(ReportInputError, match=r"gen-0/summary.json: expected a JSON object"):
        write_report(run)
    (run / "gen-0" / "summary.json").write_text('{"generation": ')
    with pytest.raises(ReportInputError, match=r"gen-0/summary.json: not valid JSON"):
        key_table_markdown(run)
    with pytest.raises(ReportInputError, match="not a run directory"):
        write_report(tmp_path / "missing")


def test_screenshot_without_chromium_returns_false(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><body>hi</body></html>")
    assert screenshot(page, tmp_path / "shot.png", chromium=str(tmp_path / "no-chromium")) is False
    assert not (tmp_path / "shot.png").exists()


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed (Debian package chromium)")
def test_screenshot_of_a_report_with_headless_chromium(tmp_path: Path) -> None:
    page = write_report(make_run(tmp_path, truth=True, experiments=False))
    shot = tmp_path / "shot.png"
    assert screenshot(page, shot, width=800, height=600)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_lifts_over_the_generation0_holdout_get_their_own_table(tmp_path: Path) -> None:
    run = make_run(tmp_path, truth=False, experiments=False)
    path = run / "gen-2" / "summary.json"
    summary = json.loads(path.read_text())
    summary["vs_generation0"] = {
        "champion": {"model_version": "gen-1", "breadth_lift": fig(0.04), "depth_lift": fig(0.12, 0.1)},
        "challenger": {"model_version": "gen-2", "breadth_lift": fig(0.08),
                       "depth_lift": {**fig(0.21, 0.1, 60), "mde": 0.18}}}
    path.write_text(json.dumps(summary))
    page = render_html(run)
    assert "Lift over generation 0 (holdout arm)" in page
    assert "<td>2</td><td>challenger</td><td>gen-2</td><td>+8.0% [+3.0%, +13.0%] n=120</td>" in page
    assert "<td>+21.0% [+11.0%, +31.0%] n=60</td><td>18.0%</td>" in page
    assert "Lift over generation 0" not in render_html(make_run(tmp_path / "plain", truth=False, experiments=False))


def test_the_verdict_follows_the_runs_decisions_and_reads_the_truth(tmp_path: Path) -> None:
    """Decision files as the flywheel writes them -> summaries -> the report's and the CLI's verdict."""
    from characterflywheel.report.html import verdict_lines
    from characterflywheel.summary import write_generation_summary

    run = tmp_path / "run"

    def write(generation: int, name: str, data: dict[str, Any]) -> None:
        path = run / f"gen-{generation}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))

    def pair(diff: float) -> dict[str, Any]:
        return {"diff": diff, "lo": diff - 0.02, "hi": diff + 0.02, "n_prompts": 64, "samples": 8}

    write(0, "deploy/decision.json", {"champion_model": "m", "champion_version": "gen-0", "promoted": False, "arms": {"champion": "gen-0"}})
    # gen 1: passed, served and promoted (truly better); gen 2: served, not promoted although truly better;
    # gen 3: stopped at its gates
    write(1, "gate/gates.json", {"passed": True, "checks": [], "reasons": []})
    write(1, "deploy/decision.json", {"champion_model": "m", "champion_version": "gen-1", "challenger_version": "gen-1", "promoted": True,
                                      "arms": {"champion": "gen-0", "challenger": "gen-1"},
                                      "reason": "offline gates passed and the A/B found no harm"})
    write(1, "evaluate/truth.json", {"truth_set": {"child_vs_parent": pair(0.04), "child_vs_generation0": pair(0.04)}})
    write(2, "gate/gates.json", {"passed": True, "checks": [], "reasons": []})
    write(2, "deploy/decision.json", {"champion_model": "m", "champion_version": "gen-1", "challenger_version": "gen-2", "promoted": False,
                                      "arms": {"champion": "gen-1", "challenger": "gen-2"},
                                      "reason": "A/B verdict no-ship: depth down"})
    write(2, "evaluate/truth.json", {"truth_set": {"child_vs_parent": pair(0.05), "child_vs_generation0": pair(0.09)}})
    write(3, "gate/gates.json", {"passed": False, "checks": [], "reasons": ["win rate 0.41 < 0.5"]})
    write(3, "deploy/decision.json", {"champion_model": "m", "champion_version": "gen-1", "challenger_version": None, "promoted": False,
                                      "arms": {"champion": "gen-1"}})
    for generation in range(4):
        write_generation_summary(run, generation)
    summaries = rd.load_summaries(run)
    assert [(s["parent_version"], s["served"], s["promoted"]) for s in summaries] == [
        (None, True, False), ("gen-0", True, True), ("gen-1", True, False), ("gen-1", False, False)]

    headline, lines, truth = verdict_lines(summaries)
    assert headline == "Champion: gen-1 after 3 generation(s); promoted: gen-1."
    assert lines[0].startswith("gen 1: gates passed; promoted: offline gates passed")
    assert lines[1].startswith("gen 2: gates passed; served, not promoted: A/B verdict no-ship: depth down")
    assert lines[2] == "gen 3: gates failed; not served: stopped at its gates: win rate 0.41 < 0.5"
    assert truth[0].startswith("Hidden truth: the champion gen-1 against generation 0: +0.040 [+0.020, +0.060]")
    assert truth[1] == "The truth disagrees: gen 2 was not promoted but is better than its parent."
    page = render_html(run)
    assert page.index('id="verdict"') < page.index('id="headline"')  # the report opens with it
    assert "Champion: gen-1 after 3 generation(s)" in page and "The truth disagrees" in page
    assert 'href="#experiments"' not in page  # no experiment ran: no link to nowhere
