"""characterflywheel: run the CharacterFlywheel loop on a character chat model. Curate its traffic,
learn reward models of engagement, herd the policy (SFT, DPO, online RL), gate, serve the A/B and
promote, one generation after another.

Start with `characterflywheel demo` (the embedded model in a simulated world) or
`characterflywheel init flywheel.toml` (a commented config to edit).
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer  # noqa: E402
from typer.core import TyperArgument, TyperCommand  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from characterflywheel import artifacts  # noqa: E402
from characterflywheel.config import Config, ConfigError, load_config, render_commented  # noqa: E402
from characterflywheel.data.jsonl import read_jsonl  # noqa: E402
from characterflywheel.deploy.decision import read_decision  # noqa: E402
from characterflywheel.evaluate.gates import read_gates  # noqa: E402
from characterflywheel.runs import StageResult, limit_malloc_arenas  # noqa: E402

limit_malloc_arenas()

# Plain (click) help: this typer's rich panels show every flag as taking a value ("--force <bool>"),
# and users typed `init --force true`.
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode=None)
console = Console()
err_console = Console(stderr=True)


class PlainHelpCommand(TyperCommand):
    """typer's plain help, with an argument that has a metavar listed by it alone: typer adds the
    argument's Python type even then (``FILE <list[Path]>``), which tells a user nothing."""

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                sections["Arguments"].append((param.metavar or record[0], record[1]))
            else:
                sections["Options"].append(record)
        for title, records in sections.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", metavar="FILE", help="TOML config file.")]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", metavar="NAME", help="Named preset: tiny or demo.")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", metavar="KEY=VALUE",
                 help="Override a config value (KEY is section.key, e.g. serve.port=8080); repeatable."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show the libraries' own progress bars, logs and "
                                                             "warnings (off: one progress view of ours).")]


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input, shown as one line instead of a traceback."""
    errors: list[type[BaseException]] = [ConfigError]
    try:
        from characterflywheel.data.ingest import IngestError

        errors.append(IngestError)
    except ImportError:
        pass
    try:
        from characterflywheel.deploy.registry import RegistryError
        from characterflywheel.report import ReportInputError

        errors += [RegistryError, ReportInputError]
    except ImportError:
        pass
    try:
        from characterflywheel.models import ModelNotFoundError

        errors.append(ModelNotFoundError)
    except ImportError:
        pass
    try:
        from characterflywheel.production import PeopleFolderError

        errors.append(PeopleFolderError)
    except ImportError:
        pass
    return tuple(errors)


@contextmanager
def one_line_errors() -> Iterator[None]:
    try:
        yield
    except _user_errors() as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _config(config: Optional[Path], preset: Optional[str], overrides: Optional[list[str]]) -> Config:
    if config is not None and not config.is_file():
        raise ConfigError(f"{config}: {'a folder, not a config file' if config.is_dir() else 'no such config file'}")
    return load_config(config, preset, overrides or ())


@app.command(cls=PlainHelpCommand)
def init(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the config.")] = Path("flywheel.toml"),
    preset: PresetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented default config (the run is named after the file: runs/<name>/)."""
    with one_line_errors():
        if path.suffix != ".toml":
            raise ConfigError(f"{path}: a config file ends in .toml (--force takes no value)")
        if path.exists() and not force:
            raise ConfigError(f"{path}: already exists (use --force to overwrite)")
        config = load_config(preset=preset, overrides=[f"name={path.stem}"])
        path.write_text(render_commented(config), encoding="utf-8")
    console.print(f"wrote {path}")


@app.command(cls=PlainHelpCommand)
def ingest(
    files: Annotated[list[Path], typer.Argument(
        metavar="FILE", help="Traffic files: JSONL (one conversation a line) or Parquet.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", metavar="FOLDER", help="Output folder: Parquet dataset + quarantine.jsonl.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON on the last line.")] = False,
    show: Annotated[int, typer.Option(metavar="N", help="Rejected records to list.")] = 10,
) -> None:
    """Validate traffic; accepted records to Parquet, rejected ones to quarantine.jsonl with the reason."""
    from characterflywheel.data.ingest import ingest as run_ingest

    with one_line_errors():
        report = run_ingest(files, out, progress=not as_json and sys.stderr.isatty())
    for line in itertools.islice(report.rejection_messages(), show):
        err_console.print(f"[yellow]quarantined[/yellow] {line}", highlight=False, soft_wrap=True)
    if report.quarantined > show:
        err_console.print(f"... and {report.quarantined - show} more in {out / artifacts.QUARANTINE}")
    if as_json:
        print(json.dumps(report.to_json()))
        return
    table = Table(title=f"ingest -> {out}")
    for column in ("read", "accepted", "quarantined"):
        table.add_column(column, justify="right")
    table.add_row(str(report.read), str(report.accepted), str(report.quarantined))
    console.print(table)
    for reason, count in sorted(report.by_reason.items(), key=lambda item: -item[1]):
        console.print(f"  {count:>6}  {reason}")


@app.command(cls=PlainHelpCommand)
def generate(
    prompt: Annotated[Optional[list[str]], typer.Option(
        "--prompt", "-p", metavar="TEXT", help="Reply to this line and exit (repeatable).")] = None,
    system: Annotated[str, typer.Option(metavar="TEXT", help="System prompt (the character card).")] = "",
    n: Annotated[int, typer.Option(metavar="N", help="Candidates per prompt.")] = 1,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Chat with the policy from the terminal (interactive without --prompt)."""
    from characterflywheel.models import make_backend
    from characterflywheel.pipeline import backend_options, sampling_params

    with one_line_errors():
        cfg = _config(config, preset, overrides)
        backend = make_backend(**backend_options(cfg))
    params = sampling_params(cfg, n=n)
    head = [{"role": "system", "content": system}] if system else []
    if prompt:
        replies = backend.chat([[*head, {"role": "user", "content": line}] for line in prompt], params)
        for line, candidates in zip(prompt, replies):
            console.print(f"[bold]user:[/bold] {line}", highlight=False)
            for reply in candidates:
                console.print(f"[bold cyan]assistant:[/bold cyan] {reply}", highlight=False)
        return
    _chat_loop(lambda history: backend.chat([history], params)[0][0], head)


QUIT_COMMANDS = {"/quit", "/exit", "/bye", "/q", "quit", "exit"}


def _chat_loop(reply_to: Callable[[list[dict[str, str]]], str], history: list[dict[str, str]]) -> None:
    console.print("[dim]chatting with the policy; /quit, an empty line or Ctrl-D ends[/dim]")
    while True:
        try:
            line = console.input("[bold]you>[/bold] ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line or line.lower() in QUIT_COMMANDS:
            break
        history.append({"role": "user", "content": line})
        reply = reply_to(history)
        history.append({"role": "assistant", "content": reply})
        console.print(f"[bold cyan]bot>[/bold cyan] {reply}", highlight=False)


def _print_stage(result: StageResult) -> None:
    verb = "[dim]skipped (done)[/dim]" if result.skipped else "[green]done[/green]"
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in list(result.manifest.get("metrics", {}).items())[:8])
    console.print(f"stage [bold]{result.name}[/bold] {verb}  {metrics}", highlight=False)


@app.command(cls=PlainHelpCommand)
def demo(
    generations: Annotated[Optional[int], typer.Option(
        "--generations", "-n", metavar="N", help="Generations after gen 0.")] = None,
    config: ConfigOpt = None,
    preset: Annotated[Optional[str], typer.Option("--preset", metavar="NAME", help="Named preset: tiny or demo.")] = "demo",
    overrides: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """The embedded default, end to end: the flywheel for N generations in the simulated world, then the report."""
    with one_line_errors():
        cfg = _config(config, preset, overrides)
        _run_flywheel(cfg, generations, verbose)


@app.command(cls=PlainHelpCommand)
def world(
    traffic: Annotated[Optional[list[Path]], typer.Argument(metavar="FILE", help="Extra traffic files to ingest.")] = None,
    config: ConfigOpt = None,
    preset: Annotated[Optional[str], typer.Option("--preset", metavar="NAME", help="Named preset: tiny or demo.")] = "demo",
    overrides: SetOpt = None,
) -> None:
    """Generation 0 in the simulated world: headroom, a two-arm A/B of the base model, its read-out."""
    from characterflywheel.demo import run_demo

    with one_line_errors():
        cfg = _config(config, preset, overrides)
        console.print(f"run directory: {cfg.run_dir()}")
        results = {r.name: r for r in run_demo(cfg, tuple(traffic or ()), notify=_print_stage)}
    for record in read_jsonl(results["generate"].out_dir / artifacts.REPLIES):
        user = record["messages"][-1]["content"]
        console.print(f"\n[bold]user:[/bold] {user}\n[bold cyan]policy:[/bold cyan] {record['replies'][0]}", highlight=False)
    _print_headroom(json.loads((results["headroom"].out_dir / artifacts.HEADROOM).read_text()))
    _print_ab(results["ab"].out_dir)
    console.print(f"\nartifacts: {cfg.run_dir()}")


def _print_headroom(figures: dict) -> None:
    table = Table(title=f"headroom: {figures['prompts']} prompts x {figures['k']} samples on the hidden landscape")
    for column in ("choice", "P(continue)", "instruction following"):
        table.add_column(column, justify="right")
    for label, key in (("base (any sample)", "base"), (f"random of {figures['k']}", "random_of_k"),
                       (f"best of {figures['k']}", "best_of_k")):
        table.add_row(label, f"{figures[key + '_p_continue']:.3f}", f"{figures[key + '_if_rate']:.3f}")
    console.print(table)


def _print_ab(ab_dir: Path) -> None:
    data = json.loads((ab_dir / artifacts.AB).read_text())
    table = Table(title="A/B: lift over control (95 % CI)")
    for column in ("arm", "users", "breadth", "depth", "breadth lift", "depth lift", "verdict"):
        table.add_column(column, justify="right")
    challengers = data.get("challengers", {})
    for arm, summary in data.get("arms", {}).items():
        lifts = challengers.get(arm)
        cells = ["", "", "control"]
        if lifts:
            cells = [_lift_cell(lifts["breadth"]), _lift_cell(lifts["depth"]), lifts["verdict"]]
        table.add_row(arm, str(summary["users"]), f"{summary['breadth']:.3f}", f"{summary['depth']:.2f}", *cells)
    console.print(table)
    console.print(f"plot: {ab_dir / artifacts.AB_PLOT}")


def _lift_cell(lift: dict) -> str:
    if lift.get("lift") is None:
        return "n/a"
    return f"{lift['lift']:+.1%} [{lift['ci_lo']:+.1%}, {lift['ci_hi']:+.1%}]"


@app.command(cls=PlainHelpCommand)
def serve(
    log_dir: Annotated[Optional[Path], typer.Option(metavar="FOLDER", help="Traffic log folder (default: <run>/serve).")] = None,
    host: Annotated[Optional[str], typer.Option(
        metavar="ADDRESS", help="Address to bind (default: serve.host, loopback).")] = None,
    port: Annotated[Optional[int], typer.Option(metavar="PORT", help="Port (default: serve.port, else 8000).")] = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Serve the A/B arms behind an OpenAI-compatible gateway; every exchange is logged."""
    from characterflywheel.deploy.serving import serve_forever
    from characterflywheel.pipeline import build_gateway

    with one_line_errors():
        cfg = _config(config, preset, overrides)
        host, port = host or cfg.serve.host, port or cfg.serve.port or 8000
        log = log_dir or cfg.run_dir() / "serve"
        console.print(f"gateway: http://{host}:{port}/v1  traffic log: {log}")
        serve_forever(build_gateway(cfg, log), host, port)


@app.command(cls=PlainHelpCommand)
def simulate(
    users: Annotated[Optional[int], typer.Option(metavar="N", help="Simulated users (default: world.users).")] = None,
    days: Annotated[Optional[int], typer.Option(metavar="N", help="Simulated days (default: world.days).")] = None,
    base_url: Annotated[Optional[str], typer.Option(metavar="URL", help="Drive this gateway instead of starting one.")] = None,
    out: Annotated[Optional[Path], typer.Option(metavar="FOLDER", help="Output folder (default: <run>/simulated).")] = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Drive simulated users against the gateway over HTTP and leave an ingestible traffic log."""
    from characterflywheel.demo import build_world, simulate_traffic

    extra = [f"world.users={users}"] * (users is not None) + [f"world.days={days}"] * (days is not None)
    with one_line_errors():
        cfg = _config(config, preset, [*(overrides or []), *extra])
    folder = out or cfg.run_dir() / "simulated"
    folder.mkdir(parents=True, exist_ok=True)
    summary = simulate_traffic(cfg, build_world(cfg), folder, base_url)
    for key, value in summary.items():
        console.print(f"  {key:>24}  {value:.4g}", highlight=False)
    if base_url is None:
        console.print(f"traffic log: {folder / artifacts.TRAFFIC}")


@app.command(cls=PlainHelpCommand)
def ab(
    traffic: Annotated[list[Path], typer.Argument(
        metavar="FILE", help="Traffic files (JSONL or Parquet) with an arm per session.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FOLDER", help="Output folder: ingested traffic, ab.json, ab.png.")],
    pre_period: Annotated[list[Path] | None, typer.Option(
        "--pre-period", metavar="FILE",
        help="Traffic of an earlier window of the same users: CUPED covariates (repeatable).")] = None,
    control: Annotated[Optional[str], typer.Option(
        metavar="ARM", help="The control arm (default: ab.control_arm; in a flywheel window, the champion).")] = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: SetOpt = None,
) -> None:
    """A/B analysis: engagement breadth and depth per arm, lifts with 95 % CIs, guardrails, verdicts."""
    from characterflywheel.data import ingest as run_ingest
    from characterflywheel.data import read_conversations
    from characterflywheel.pipeline import analyze_traffic

    pre = None
    with one_line_errors():
        cfg = _config(config, preset, overrides)
        reports = {"ingested": run_ingest(traffic, out / "ingested", progress=False)}
        if pre_period:
            reports["pre-period"] = run_ingest(pre_period, out / "pre-period", progress=False)
            pre = out / "pre-period" / artifacts.CONVERSATIONS
        dataset = out / "ingested" / artifacts.CONVERSATIONS
        arms = {c.arm for c in read_conversations(dataset) if c.arm}
        control = control or next((arm for arm in (cfg.ab.control_arm, "champion") if arm in arms), None)
        if control not in arms:
            raise ConfigError(f"{traffic[0]}: no control arm {control or cfg.ab.control_arm!r} in the traffic "
                              f"(arms: {', '.join(sorted(arms)) or 'none'}); name one with --control")
    for folder, report in reports.items():
        if report.quarantined:
            err_console.print(f"{report.quarantined} records quarantined: {out / folder / artifacts.QUARANTINE}")
    settings = cfg.model_copy(update={"ab": cfg.ab.model_copy(update={"control_arm": control})})
    analyze_traffic(settings, dataset, out, pre_period=pre)
    _print_ab(out)


def _flywheel_progress(result: StageResult) -> None:
    generation = result.manifest.get("generation", "?")
    verb = "[dim]skipped (done)[/dim]" if result.skipped else "[green]done[/green]"
    seconds = ""
    if not result.skipped and result.manifest.get("started_at") and result.manifest.get("finished_at"):
        import datetime as dt

        took = dt.datetime.fromisoformat(result.manifest["finished_at"]) - dt.datetime.fromisoformat(
            result.manifest["started_at"])
        seconds = f" ({took.total_seconds():.0f} s)"
    metrics = ", ".join(f"{k}={v:.3g}" for k, v in list(result.manifest.get("metrics", {}).items())[:6])
    console.print(f"[bold magenta]gen {generation}[/bold magenta] > [bold]{result.name}[/bold] {verb}{seconds}  "
                  f"[dim]{metrics}[/dim]", highlight=False, overflow="ellipsis", no_wrap=True, crop=True)
    for line in _decision_lines(result):
        console.print(f"        {line}", highlight=False)


def _decision_lines(result: StageResult) -> list[str]:
    """A gate's or a deploy's outcome in words: why a child was stopped, promoted or kept out."""
    if result.name == "gate" and (result.out_dir / artifacts.GATES).is_file():
        gates = read_gates(result.out_dir / artifacts.GATES)
        return ["gates passed"] if gates.passed else [f"gate failed: {reason}" for reason in gates.reasons]
    if result.name == "deploy" and (result.out_dir / artifacts.DECISION).is_file():
        decision = read_decision(result.out_dir / artifacts.DECISION)
        if decision.challenger_version:
            verb = "promoted" if decision.promoted else "not promoted"
            return [f"{decision.challenger_version} {verb}: {decision.reason}".rstrip(": ")]
        if decision.reason:
            return [decision.reason]
    return []


def _run_flywheel(cfg: Config, generations: Optional[int], verbose: bool = False, environment: Any = None) -> Path:
    """The flywheel in ``environment`` (default: the simulated world), then the report."""
    from characterflywheel.flywheel import run_flywheel
    from characterflywheel.models.progress import silence_libraries
    from characterflywheel.report import write_report

    if not verbose:
        silence_libraries()
    if environment is None:
        from characterflywheel.demo import SimulatedEnvironment

        environment = SimulatedEnvironment(cfg)

    console.print(f"run directory: {cfg.run_dir()}")
    # One live line under the finished stages: which stage runs and for how long (a terminal only;
    # rich draws nothing live into a log or a pipe).
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  refresh_per_second=2, transient=True) as live:
        running = live.add_task("starting")

        def starting(generation: int, name: str) -> None:
            live.reset(running, description=f"gen {generation} > {name}")

        run_dir = run_flywheel(cfg, environment, generations, notify=_flywheel_progress, starting=starting)
    _print_generations(run_dir)
    report = write_report(run_dir)
    console.print(f"report: {report}")
    return report


def _print_generations(run_dir: Path) -> None:
    """The run's generations in a table, then the verdict (as the report opens)."""
    from characterflywheel.report import data as rd
    from characterflywheel.report.html import verdict_lines

    summaries = rd.load_summaries(run_dir)
    console.print(generations_table(summaries, width=min(GENERATIONS_TABLE_WIDTH, console.width)))
    headline, lines, truth_lines = verdict_lines(summaries)
    console.print(f"[bold]{headline}[/bold]", highlight=False)
    for line in [*lines, *truth_lines]:
        console.print(f"  {line}", highlight=False, soft_wrap=False)


GENERATIONS_TABLE_WIDTH = 100  # whole in a log, a CI page or half a screen, however wide the terminal


def generations_table(summaries: list[dict[str, Any]], width: int = GENERATIONS_TABLE_WIDTH) -> Table:
    """One row a generation (its gates, A/B and truth figures), titled with the run's champion."""
    from characterflywheel.report import data as rd

    champion = rd.run_verdict(summaries).champion
    table = Table(title=f"generations (champion: {champion})", width=width)
    for column in ("gen", "gates", "served", "promoted", "RM win vs parent", "breadth lift", "depth lift",
                   "truth vs parent"):
        table.add_column(column, justify="right")

    def point(found: Optional[rd.Reading], percent: bool = False) -> str:
        if found is None:
            return "–"
        return f"{found.value:+.1%}" if percent else f"{found.value:.3f}"

    for summary in summaries:
        truth = rd.section(summary, "truth", "truth_set", "child_vs_parent") or {}
        first = summary["generation"] == 0
        table.add_row(str(summary["generation"]), {True: "pass", False: "FAIL"}.get(rd.gates_passed(summary), "–"),
                      "yes" if summary.get("served") else "no", "–" if first else
                      "yes" if summary.get("promoted") else "no", point(rd.win_rate(summary, "parent")),
                      point(rd.lift(summary, "breadth"), True), point(rd.lift(summary, "depth"), True),
                      "–" if truth.get("diff") is None else f"{truth['diff']:+.3f}")
    return table


WAITING_FOR_PEOPLE_EXIT = 3


@contextmanager
def waiting_for_people() -> Iterator[None]:
    """A production run that needs people's work (labels, a served window) stops with its message
    (what to fill, where, the command to resume) and exit code 3: not a failure, a pause."""
    from characterflywheel.production import WaitingForPeople

    try:
        yield
    except WaitingForPeople as waiting:
        err_console.print(f"[yellow]waiting for people:[/yellow] {escape(str(waiting))}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(WAITING_FOR_PEOPLE_EXIT) from None


def _config_args(config: Optional[Path], preset: Optional[str], overrides: Optional[list[str]]) -> list[str]:
    """The options that chose the config, as typed: repeated in the commands a waiting run prints."""
    return ([*(["--config", str(config)] if config is not None else []),
             *(["--preset", preset] if preset is not None else [])]
            + [arg for override in overrides or () for arg in ("--set", override)])


@app.command(cls=PlainHelpCommand)
def run(
    generations: Annotated[Optional[int], typer.Option("--generations", "-n", metavar="N", help="Generations after gen 0 (default: flywheel.generations).")] = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: SetOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the flywheel for N generations (resumes where it stopped): in the simulated world, or with the
    team's annotators and users when the config says environment.kind = "production".

    Exit codes: 0 done; 1 a bad input (one line naming file and field); 3 waiting for people (production:
    tasks to label or an A/B window to serve; the message names the file to fill and the command to re-run)."""
    with one_line_errors(), waiting_for_people():
        cfg = _config(config, preset, overrides)
        environment = None
        if cfg.environment.kind == "production":
            from characterflywheel.production import ProductionEnvironment

            args = _config_args(config, preset, overrides)
            resume = shlex.join(["characterflywheel", "run", *args,
                                 *(["--generations", str(generations)] if generations is not None else [])])
            environment = ProductionEnvironment(
                cfg, config_args=args, resume_command=resume,
                say=lambda line: err_console.print(escape(line), highlight=False, soft_wrap=True))
        _run_flywheel(cfg, generations, verbose, environment)


@app.command(cls=PlainHelpCommand)
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory, e.g. runs/demo.")],
    out: Annotated[Optional[Path], typer.Option(metavar="FILE", help="HTML file (default: <run>/report.html).")] = None,
) -> None:
    """Write the run's self-contained HTML report."""
    from characterflywheel.report import write_report
    from characterflywheel.summary import write_generation_summary

    if not run_dir.is_dir():
        err_console.print(f"[red]error:[/red] {run_dir}: no such run directory")
        raise typer.Exit(1)
    with one_line_errors():
        for gen_dir in run_dir.glob("gen-*"):
            write_generation_summary(run_dir, int(gen_dir.name.split("-")[1]))
        console.print(f"report: {write_report(run_dir, out)}")


@app.command(cls=PlainHelpCommand)
def experiment(
    name: Annotated[str, typer.Argument(metavar="NAME", help="grpo_vs_online_dpo, near_vs_off_policy, variance_vs_mean_prompts, user_signal_rl or emoji_removal.")],
    seeds: Annotated[int, typer.Option(metavar="N", help="Seeds per variant.")] = 2,
    generations: Annotated[int, typer.Option(metavar="N", help="Generations per run.")] = 1,
    config: ConfigOpt = None,
    preset: Annotated[Optional[str], typer.Option("--preset", metavar="NAME", help="Named preset: tiny or demo.")] = "demo",
    overrides: SetOpt = None,
) -> None:
    """A controlled comparison in the simulated world (variants x seeds); the table goes to the report."""
    from characterflywheel.demo import SimulatedEnvironment
    from characterflywheel.experiments import run_experiment
    from characterflywheel.flywheel import run_flywheel

    def run_one(cfg: Config, n: int) -> Path:
        return run_flywheel(cfg, SimulatedEnvironment(cfg), n, notify=_flywheel_progress)

    with one_line_errors():
        cfg = _config(config, preset, overrides)
        path = run_experiment(name, cfg, seeds, generations, run_one)
    data = json.loads(path.read_text())
    table = Table(title=f"experiment {name}")
    for column in data["columns"]:
        table.add_column(column)
    for row in data["rows"]:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    console.print(f"results: {path} (in the report of {cfg.run_dir()})")


@app.command(cls=PlainHelpCommand)
def rollback(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Make the previous champion the champion again (MLflow registry alias)."""
    from characterflywheel.deploy.registry import Registry

    with one_line_errors():
        cfg = _config(config, preset, overrides)
        ref = Registry(cfg.run_dir(), model_name=f"{cfg.name}-policy").rollback()
    console.print(f"champion is now version {ref.version} ({ref.model_version}); the next generation trains from it")


if __name__ == "__main__":
    app()
