"""The run report: one self-contained HTML page per run (plots inline), its key table as Markdown,
and a screenshot with headless Chromium when it is installed.

The page is written by hand (string templates with ``html.escape`` on every value that comes from the
run's JSON) rather than with a templating library: it is one static page with a fixed layout, and
keeping it free of external JS/CSS is the point -- it must open from a file, offline, anywhere.
Plots are matplotlib PNGs embedded as base64 ``data:`` URIs (:mod:`characterflywheel.report.plots`).

Sections (each left out, or replaced by a one-line note, when the run has no data for it): headline
table per generation; A/B breadth and depth lifts; win rates vs parent and reference; instruction
following and violation rates; the reward-hacking view (reward-model score vs hidden-landscape truth,
only for runs in the simulated world); style features; history bias; data counts per stage; gate
decisions with reasons; reward-model quality; stage wall times; experiment tables.
"""

from __future__ import annotations

import datetime as dt
import html
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from characterflywheel.report import data as rd
from characterflywheel.report import plots

Summary = dict[str, Any]
REPORT_FILE = "report.html"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")

HEADLINE_COLUMNS = ("gen", "model", "parent", "gates", "served", "promoted", "win vs parent", "evidence z",
                    "win vs reference",
                    "IF rate", "violation rate", "breadth lift", "depth lift")


# --------------------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """Counts as integers, other numbers with ``digits`` decimals; missing or non-finite as ``–``."""
    found = rd.number(value)
    if found is None:
        return "–" if value is None or isinstance(value, (int, float)) else str(value)
    if signed:
        return f"{found:+.{digits}f}"
    if isinstance(value, int) or (found.is_integer() and abs(found) >= 1):
        return str(int(found))
    return f"{found:.{digits}f}"


def format_figure(found: rd.Reading | None, signed: bool = False) -> str:
    """``0.580 [0.520, 0.640] n=120``; a relative figure as ``+3.0% [+1.0%, +5.0%]``; ``–`` when missing."""
    if found is None:
        return "–"

    def show(value: float | None) -> str:
        if found.relative and value is not None:
            return f"{100 * value:+.1f}%"
        return format_number(value, signed=signed)

    text = show(found.value)
    if found.has_interval:
        text += f" [{show(found.lo)}, {show(found.hi)}]"
    if found.n is not None:
        text += f" n={found.n}"
    return text


def _percent(value: Any) -> str:
    found = rd.number(value)
    return "–" if found is None else f"{100 * found:.1f}%"


def _yes_no(value: bool | None) -> str:
    return "–" if value is None else "yes" if value else "no"


def _gates_text(summary: Summary) -> str:
    passed = rd.gates_passed(summary)
    if passed is None:
        return "–"
    checks = rd.gate_checks(summary)
    failed = sum(1 for check in checks if not check.passed and not check.skipped)
    return "passed" if passed else f"failed ({failed} of {len(checks)})" if checks else "failed"


def _evidence_text(summary: Summary) -> str:
    """The combined z of the child's evidence over its parent (reward models + user signal)."""
    found = rd.number(rd.section(summary, "offline", "evidence_vs_parent", "combined_z"))
    return "–" if found is None else f"{found:+.1f}"


def _resolution(ab: dict[str, Any]) -> str:
    """What the A/B could resolve: the minimum detectable relative lifts (80 % power)."""
    mdes = {m: rd.number((ab.get(f"{m}_lift") or {}).get("mde")) for m in ("breadth", "depth")}
    shown = [f"{metric} {value:.0%}" for metric, value in mdes.items() if value is not None]
    return f". Smallest lifts these arms detect (80 % power): {', '.join(shown)}" if shown else ""


def headline_rows(summaries: Sequence[Summary]) -> list[list[str]]:
    """The key table: one row of plain-text cells per generation (``HEADLINE_COLUMNS``)."""
    rows = []
    for summary in summaries:
        first = summary["generation"] == 0
        rows.append([
            str(summary["generation"]),
            str(summary.get("model_version") or "–"),
            str(summary.get("parent_version") or "–"),
            _gates_text(summary),
            _yes_no(summary.get("served")),
            "–" if first else _yes_no(summary.get("promoted")),
            format_figure(rd.win_rate(summary, "parent")),
            _evidence_text(summary),
            format_figure(rd.win_rate(summary, "reference")),
            format_figure(rd.rate(summary, "if")),
            format_figure(rd.rate(summary, "violation")),
            format_figure(rd.lift(summary, "breadth"), signed=True),
            format_figure(rd.lift(summary, "depth"), signed=True),
        ])
    return rows


def _markdown_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def key_table_markdown(run_dir: Path) -> str:
    """The headline table as Markdown (for the README); figures are value [CI] n."""
    summaries = rd.load_summaries(Path(run_dir))
    lines = ["| " + " | ".join(HEADLINE_COLUMNS) + " |", "|" + "---|" * len(HEADLINE_COLUMNS)]
    for row in headline_rows(summaries):
        lines.append("| " + " | ".join(_markdown_cell(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML pieces


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{_esc(classes[index])}"' if classes and classes[index] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(uri: str | None, alt: str) -> str:
    if uri is None:
        return f'<p class="note">No data for {_esc(alt)} in this run.</p>'
    return f'<img src="{uri}" alt="{_esc(alt)}">'


def _section(anchor: str, title: str, body: str, note: str = "") -> str:
    lead = f'<p class="note">{_esc(note)}</p>' if note else ""
    return f'<section id="{anchor}"><h2>{_esc(title)}</h2>{lead}{body}</section>'


def _headline_section(summaries: Sequence[Summary]) -> str:
    classes = ["deployed" if s.get("promoted") else "stopped" if rd.gates_passed(s) is False else ""
               for s in summaries]
    return _section("headline", "Generations", _table(HEADLINE_COLUMNS, headline_rows(summaries), classes),
                    "Figures are value [95% CI] n. Win rates are the child's against its parent and the fixed "
                    "reference, judged by the reward models; evidence z: the reward models' and the user-signal "
                    "model's paired evidence that the child beats its parent (the latter counting its own fitting error), "
                    "summed, the user signal weighted by its skill on held-out conversations (the demo gates on its sign, or on a lower bar for a child whose instruction "
                    "following rose significantly: a steerability step); "
                    "lifts are the A/B challenger against the champion, "
                    "relative, in %. Served: the child was an A/B arm; promoted: it became champion.")


def _truth_text(pair: Any) -> str:
    if not isinstance(pair, dict):
        return ""
    interval = "" if pair.get("lo") is None else f" [{pair['lo']:+.3f}, {pair['hi']:+.3f}]"
    return f"{pair['diff']:+.3f}{interval} (truth set, {pair.get('n_prompts')} prompts x {pair.get('samples')})"


def verdict_lines(summaries: Sequence[Summary]) -> tuple[str, list[str], list[str]]:
    """The verdict in plain text: the headline, one line per generation, and the truth's reading."""
    verdict = rd.run_verdict(list(summaries))
    promoted = ", ".join(f"gen-{g}" for g in verdict.promoted) or "none"
    headline = f"Champion: {verdict.champion} after {len(verdict.generations)} generation(s); promoted: {promoted}."
    lines = []
    for g in verdict.generations:
        gates = {None: "no gates yet", True: "gates passed", False: "gates failed"}[g.gates]
        fate = "promoted" if g.promoted else "served, not promoted" if g.served else "not served"
        truth = f"; truth vs parent {_truth_text(g.truth_vs_parent)}" if g.truth_vs_parent else ""
        lines.append(f"gen {g.generation}: {gates}; {fate}: {g.reason}{truth}")
    truth_lines = []
    if verdict.champion_vs_generation0 is not None:
        truth_lines.append(f"Hidden truth: the champion {verdict.champion} against generation 0: "
                           f"{_truth_text(verdict.champion_vs_generation0)} P(continue).")
    if any(g.truth_vs_parent for g in verdict.generations):
        truth_lines.append("The truth agrees with every decision (no promoted child significantly worse than its "
                           "parent, no stopped child significantly better)." if not verdict.truth_disagreements
                           else "The truth disagrees: " + "; ".join(verdict.truth_disagreements) + ".")
    return headline, lines, truth_lines


def _verdict_section(summaries: Sequence[Summary]) -> str:
    headline, lines, truth = verdict_lines(summaries)
    items = "".join(f"<li>{_esc(line)}</li>" for line in lines)
    body = (f'<p class="verdict">{_esc(headline)}</p>' + (f"<ul>{items}</ul>" if items else "")
            + "".join(f"<p>{_esc(line)}</p>" for line in truth))
    return _section("verdict", "Verdict", body)


def _generation0_table(summaries: Sequence[Summary]) -> str:
    """Every served model's engagement lift over the generation-0 holdout arm, per window."""
    rows = []
    for s in summaries:
        for arm, node in (s.get("vs_generation0") or {}).items():
            rows.append([str(s["generation"]), arm, str(node.get("model_version") or "–"),
                         format_figure(rd.lift(s, "breadth", over_generation0=arm), signed=True),
                         format_figure(rd.lift(s, "depth", over_generation0=arm), signed=True),
                         _percent((node.get("depth_lift") or {}).get("mde"))])
    if not rows:
        return ""
    return ("<h3>Lift over generation 0 (holdout arm)</h3>"
            + _table(["window (gen)", "arm", "model", "breadth lift", "depth lift", "depth MDE"], rows))


def _paired(figure: Any) -> str:
    if not isinstance(figure, dict) or figure.get("diff") is None:
        return "–"
    interval = "" if figure.get("lo") is None else f" [{figure['lo']:+.3f}, {figure['hi']:+.3f}]"
    return f"{figure['diff']:+.3f}{interval} n={figure.get('n_prompts')}x{figure.get('samples')}"


def _truth_set_table(summaries: Sequence[Summary]) -> str:
    """Every generation's child on the fixed truth set, paired against its parent and generation 0."""
    rows = []
    for s in summaries:
        found = (s.get("truth") or {}).get("truth_set")
        if not found:
            continue
        means = found.get("mean", {})
        steering = [_paired((found.get(measure) or {}).get("child_vs_generation0"))
                    for measure in ("instruction_following", "violation_rate")]
        rows.append([s["generation"], format_number(means.get("parent")), format_number(means.get("child")),
                     _paired(found.get("child_vs_parent")), _paired(found.get("child_vs_generation0")),
                     *steering, _yes_no(s.get("promoted"))])
    if not rows:
        return ""
    return ("<h3>Hidden truth on the fixed truth set</h3>"
            '<p class="note">Mean hidden P(continue) on prompts no window served and no generation trained '
            "on, the same prompts and seeds for every model, at the serving temperature; differences are paired "
            "by prompt with 95 % CIs. The same replies checked against their character cards' rules give "
            "instruction following (share of replies keeping every applicable rule) and the violation rate "
            "(share of rule checks failed), as fractions, over the prompts where a rule applies.</p>"
            + _table(["gen", "parent", "child", "child - parent", "child - gen 0",
                      "following: child - gen 0", "violations: child - gen 0", "promoted"], rows))


def _reward_hacking_section(summaries: Sequence[Summary]) -> str:
    uri = plots.reward_hacking(summaries)
    if uri is None:
        return _section("reward-hacking", "Reward-model score vs hidden truth",
                        "", "This run had no hidden landscape (not in the simulated world): the truth view is "
                            "only available there.")
    rows = []
    for s in summaries:
        proxy = [rd.truth_series(s, "rm_score", who) for who in ("parent", "child")]
        truth = [rd.truth_series(s, "landscape_p_continue", who) for who in ("parent", "child")]
        if all(v is None for v in proxy + truth):
            continue
        delta = [None if a is None or b is None else b - a for a, b in (proxy, truth)]
        rows.append([s["generation"], format_number(proxy[0]), format_number(proxy[1]),
                     format_number(delta[0], signed=True), format_number(truth[0]), format_number(truth[1]),
                     format_number(delta[1], signed=True)])
    table = _table(["gen", "RM parent", "RM child", "RM change", "truth parent", "truth child", "truth change"],
                   rows)
    return _section("reward-hacking", "Reward-model score vs hidden truth",
                    _truth_set_table(summaries) + _image(uri, "reward hacking") + table,
                    "The proxy (reward-model score) against the simulated world's hidden P(continue). Where the "
                    "proxy rises and the truth does not, the policy is exploiting the reward model.")


def _style_section(summaries: Sequence[Summary]) -> str:
    rows, classes = [], []
    for s in summaries:
        for feature in rd.style_features(s):
            rows.append([s["generation"], feature.name, format_number(feature.parent), format_number(feature.child),
                         format_number(feature.reward_share), "FLAGGED" if feature.flagged else ""])
            classes.append("stopped" if feature.flagged else "")
    if not rows:
        return _section("style", "Style features", "", "No style figures in this run.")
    body = _image(plots.style_features(summaries), "style features")
    body += _table(["gen", "feature", "parent", "child", "reward share", "flag"], rows, classes)
    return _section("style", "Style features", body,
                    "Rate of each style feature in parent and child replies; a feature is flagged when it "
                    "explains too large a share of the reward and the child moved it the way the reward leans "
                    "(a style artifact).")


def _history_bias_section(summaries: Sequence[Summary]) -> str:
    rows, classes = [], []
    for s in summaries:
        for feature in rd.history_bias(s):
            rows.append([s["generation"], feature.name, format_number(feature.with_history),
                         format_number(feature.without_history), "FLAGGED" if feature.flagged else ""])
            classes.append("stopped" if feature.flagged else "")
    if not rows:
        return ""
    return _section("history-bias", "History bias", _table(["gen", "feature", "rate with it in history",
                                                            "rate without", "flag"], rows, classes),
                    "How often the child's replies show a feature when the conversation history has it vs not.")


def _funnel_section(summaries: Sequence[Summary]) -> str:
    counts = [(s["generation"], rd.data_counts(s)) for s in summaries]
    keys: list[str] = []
    for _, c in counts:
        keys += [k for k in c if k not in keys]
    if not keys:
        return _section("data", "Data counts per stage", "", "No data counts in this run.")
    rows = [[generation] + [format_number(c.get(k)) for k in keys] for generation, c in counts]
    return _section("data", "Data counts per stage",
                    _image(plots.data_funnel(summaries), "data counts") + _table(["gen", *keys], rows))


def _gates_section(summaries: Sequence[Summary]) -> str:
    parts = []
    for s in summaries:
        passed = rd.gates_passed(s)
        ab = s.get("ab") if isinstance(s.get("ab"), dict) else {}
        if passed is None and not ab:
            continue
        verdict = "no gates" if passed is None else "passed" if passed else "FAILED"
        header = f"<h3>gen {_esc(s['generation'])}: gates {_esc(verdict)}"
        if "promoted" in ab:
            header += f"; A/B {'promoted' if ab.get('promoted') else 'not promoted'}"
        header += "</h3>"
        checks = rd.gate_checks(s)
        table = _table(["check", "value", "threshold", "result", "reason"],
                       [[c.name, format_number(c.value), format_number(c.threshold),
                         "skipped" if c.skipped else "pass" if c.passed else "FAIL", c.reason] for c in checks],
                       ["" if c.passed or c.skipped else "stopped" for c in checks]) if checks else ""
        reasons = rd.section(s, "gates", "reasons")
        listed = "".join(f"<li>{_esc(r)}</li>" for r in reasons) if isinstance(reasons, list) else ""
        reason_list = f"<ul>{listed}</ul>" if listed else ""
        ab_reason = f'<p class="note">A/B: {_esc(ab["reason"])}{_esc(_resolution(ab))}</p>' if ab.get("reason") else ""
        parts.append(header + table + reason_list + ab_reason)
    if not parts:
        return _section("gates", "Gate decisions", "", "No gate decisions in this run.")
    return _section("gates", "Gate decisions", "".join(parts),
                    "A failed gate keeps the child from deploying; the parent stays champion.")


def _reward_models_section(summaries: Sequence[Summary]) -> str:
    flat = [(s["generation"], rd.flat_numbers(s.get("reward_models") or {})) for s in summaries]
    keys: list[str] = []
    for _, values in flat:
        keys += [k for k in values if k not in keys]
    if not keys:
        return ""
    rows = [[key] + [format_number(values.get(key)) for _, values in flat] for key in keys]
    return _section("reward-models", "Reward models (held-out quality)",
                    _table(["metric", *[f"gen {g}" for g, _ in flat]], rows))


def _timing_section(summaries: Sequence[Summary]) -> str:
    uri = plots.stage_seconds(summaries)
    return "" if uri is None else _section("timing", "Wall time per stage", _image(uri, "stage wall time"))


def _experiments_section(run_dir: Path) -> str:
    experiments = rd.load_experiments(run_dir)
    if not experiments:
        return ""
    parts = []
    for experiment in experiments:
        title = f"<h3>{_esc(experiment.name)}</h3>"
        if experiment.error:
            parts.append(title + f'<p class="error">Could not read: {_esc(experiment.error)}</p>')
            continue
        description = f"<p>{_esc(experiment.description)}</p>" if experiment.description else ""
        width = max([len(experiment.columns), *(len(r) for r in experiment.rows)], default=0)
        columns = experiment.columns + [""] * (width - len(experiment.columns))
        rows = [[format_number(cell) if rd.number(cell) is not None else "–" if cell is None else cell
                 for cell in row] + [""] * (width - len(row)) for row in experiment.rows]
        parts.append(title + description + _table(columns, rows))
    return _section("experiments", "Experiments", "".join(parts))


def _plot_section(anchor: str, title: str, make: Callable[[Sequence[Summary]], str | None],
                  summaries: Sequence[Summary], note: str = "") -> str:
    return _section(anchor, title, _image(make(summaries), title.lower()), note)


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;
color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd;
padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}tr.deployed td{background:#eef8ee}
tr.stopped td{background:#fbecec}img{max-width:100%;display:block;margin:8px 0}.note{color:#555;font-size:13px}
.error{color:#a00}nav a{margin-right:12px;font-size:13px}.verdict{font-size:17px;font-weight:600}
"""


def render_html(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    summaries = rd.load_summaries(run_dir)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if not summaries:
        body = '<p class="note">No generation summaries (gen-&lt;n&gt;/summary.json) in this run yet.</p>'
    else:
        body = "".join([
            _verdict_section(summaries),
            _headline_section(summaries),
            _plot_section("ab", "A/B engagement lift", plots.ab_lifts, summaries,
                          "Breadth and depth of engagement, challenger against champion (and, with a holdout "
                          "arm, every served model against generation 0), with 95% CIs.")
            + _generation0_table(summaries),
            _plot_section("win-rates", "Win rates", plots.win_rates, summaries,
                          "The child against its parent and against the fixed reference; 0.5 is a tie."),
            _plot_section("instructions", "Instruction following and violations", plots.instruction_rates,
                          summaries),
            _reward_hacking_section(summaries),
            _style_section(summaries),
            _history_bias_section(summaries),
            _funnel_section(summaries),
            _gates_section(summaries),
            _reward_models_section(summaries),
            _timing_section(summaries),
        ])
    experiments = _experiments_section(run_dir)
    body += experiments
    nav = "".join(f'<a href="#{anchor}">{_esc(label)}</a>' for anchor, label in (
        ("verdict", "verdict"), ("headline", "generations"), ("ab", "A/B"), ("win-rates", "win rates"),
        ("instructions", "instructions"), ("reward-hacking", "reward hacking"), ("style", "style"), ("data", "data"),
        ("gates", "gates"), *((("experiments", "experiments"),) if experiments else ())))
    title = f"characterflywheel run {run_dir.name}"
    last = max((int(summary.get("generation", 0)) for summary in summaries), default=0)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{_esc(title)}</h1>"
            f'<p class="note">Generations 0 to {last} ({len(summaries)} models); written {_esc(now)}.</p>'
            f"<nav>{nav}</nav>"
            f"{body}</body></html>\n")


def write_report(run_dir: Path, out_path: Path | None = None) -> Path:
    """Write the run's report (default ``<run_dir>/report.html``); returns its path."""
    run_dir = Path(run_dir)
    out_path = Path(out_path) if out_path is not None else run_dir / REPORT_FILE
    page = render_html(run_dir)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(out_path)
    return out_path


# --------------------------------------------------------------------------- screenshot


def find_chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        path = candidate if Path(candidate).is_absolute() else shutil.which(candidate)
        if path and Path(path).is_file():
            return str(path)
    return None


def screenshot(html_path: Path, png_path: Path, chromium: str | None = None, width: int = 1280,
               height: int = 2400, timeout: float = 120.0) -> bool:
    """PNG of the page with headless Chromium; False (nothing installed, nothing written) without one."""
    browser = chromium if chromium is not None else find_chromium()
    if browser is None or not Path(browser).is_file():
        return False
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    # The page is self-contained: with background networking off, an offline machine's refused
    # connections (updates, sync, first-run) cannot stall the shot; a fresh profile each time.
    with tempfile.TemporaryDirectory(prefix="characterflywheel-chromium-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", f"--screenshot={png_path}", f"--window-size={width},{height}",
                   Path(html_path).resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    return result.returncode == 0 and png_path.is_file()
