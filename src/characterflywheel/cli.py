"""The ``characterflywheel`` command: thin wiring from typer options to the stages."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from characterflywheel.config import Config, ConfigError, load_config, render_commented  # noqa: E402

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file.")]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="Named preset: tiny or demo.")]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a config value: section.key=value (repeatable).")
]


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input, shown as one line instead of a traceback."""
    errors: list[type[BaseException]] = [ConfigError]
    try:
        from characterflywheel.data.ingest import IngestError

        errors.append(IngestError)
    except ImportError:
        pass
    try:
        from characterflywheel.models import ModelNotFoundError

        errors.append(ModelNotFoundError)
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
    return load_config(config, preset, overrides or ())


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the config.")] = Path("flywheel.toml"),
    preset: PresetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented default config."""
    with one_line_errors():
        if path.exists() and not force:
            raise ConfigError(f"{path}: already exists (use --force to overwrite)")
        path.write_text(render_commented(load_config(preset=preset)), encoding="utf-8")
    console.print(f"wrote {path}")


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Traffic files: JSONL (one conversation a line) or Parquet.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: Parquet dataset + quarantine.jsonl.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON on the last line.")] = False,
    show: Annotated[int, typer.Option(help="Rejected records to list.")] = 10,
) -> None:
    """Validate traffic; accepted records to Parquet, rejected ones to quarantine.jsonl with the reason."""
    from characterflywheel.data.ingest import ingest as run_ingest

    with one_line_errors():
        report = run_ingest(files, out, progress=not as_json and sys.stderr.isatty())
    for line in report.rejection_lines()[:show]:
        err_console.print(f"[yellow]quarantined[/yellow] {line}", highlight=False, soft_wrap=True)
    if report.quarantined > show:
        err_console.print(f"... and {report.quarantined - show} more in {out / 'quarantine.jsonl'}")
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


@app.command()
def generate(
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help="Reply to this line and exit (repeatable).")] = None,
    system: Annotated[str, typer.Option(help="System prompt (the character card).")] = "",
    n: Annotated[int, typer.Option(help="Candidates per prompt.")] = 1,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Chat with the policy from the terminal (interactive without --prompt)."""
    from characterflywheel.models import SamplingParams, make_backend
    from characterflywheel.pipeline import backend_options

    with one_line_errors():
        cfg = _config(config, preset, overrides)
        backend = make_backend(**backend_options(cfg))
    params = SamplingParams(
        max_new_tokens=cfg.generation.max_new_tokens,
        temperature=cfg.generation.temperature,
        top_p=cfg.generation.top_p,
        n=n,
        seed=cfg.seed,
    )
    head = [{"role": "system", "content": system}] if system else []
    if prompt:
        replies = backend.chat([[*head, {"role": "user", "content": line}] for line in prompt], params)
        for line, candidates in zip(prompt, replies):
            console.print(f"[bold]user:[/bold] {line}", highlight=False)
            for reply in candidates:
                console.print(f"[bold cyan]assistant:[/bold cyan] {reply}", highlight=False)
        return
    _chat_loop(lambda history: backend.chat([history], params)[0][0], head)


def _chat_loop(reply_to: Callable[[list[dict[str, str]]], str], history: list[dict[str, str]]) -> None:
    console.print("[dim]chatting with the policy; an empty line or Ctrl-D ends[/dim]")
    while True:
        try:
            line = console.input("[bold]you>[/bold] ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            break
        history.append({"role": "user", "content": line})
        reply = reply_to(history)
        history.append({"role": "assistant", "content": reply})
        console.print(f"[bold cyan]bot>[/bold cyan] {reply}", highlight=False)


@app.command()
def demo(
    traffic: Annotated[Optional[list[Path]], typer.Argument(help="Extra traffic files to ingest.")] = None,
    config: ConfigOpt = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="Named preset: tiny or demo.")] = "demo",
    overrides: SetOpt = None,
) -> None:
    """Run the embedded default end to end: seed traffic, ingest, generate (resumes where it stopped)."""
    from characterflywheel.pipeline import run_foundation
    from characterflywheel.runs import StageResult

    def notify(result: StageResult) -> None:
        verb = "[dim]skipped (done)[/dim]" if result.skipped else "[green]done[/green]"
        metrics = ", ".join(f"{k}={v:g}" for k, v in result.manifest.get("metrics", {}).items())
        console.print(f"stage [bold]{result.name}[/bold] {verb}  {metrics}", highlight=False)

    with one_line_errors():
        cfg = _config(config, preset, overrides)
        console.print(f"run directory: {cfg.run_dir()}")
        results = run_foundation(cfg, traffic or (), notify=notify)
    replies = results[-1].out_dir / "replies.jsonl"
    for record in map(json.loads, replies.read_text(encoding="utf-8").splitlines()):
        user = record["messages"][-1]["content"]
        console.print(f"\n[bold]user:[/bold] {user}\n[bold cyan]policy:[/bold cyan] {record['replies'][0]}", highlight=False)
    console.print(f"\nartifacts: {cfg.run_dir()}")


if __name__ == "__main__":
    app()
