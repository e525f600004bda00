"""An A/B read-out for people: rich tables in the terminal and a PNG of the lifts with their CIs.

Rendering is kept apart from the statistics (``evaluate.ab``) so the read-out's numbers do not
depend on rich or matplotlib; matplotlib draws on an Agg canvas (no pyplot global state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from characterflywheel.evaluate.ab import INCONCLUSIVE, NO_SHIP, SHIP, ABResult, finite

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["plot_ab", "render_ab"]


def _pct(value: float | None, digits: int = 2) -> str:
    return f"{value:+.{digits}%}" if finite(value) else "n/a"


def _pct_ci(lo: float | None, hi: float | None) -> str:
    return f"[{_pct(lo, 1)}, {_pct(hi, 1)}]" if finite(lo, hi) else "n/a"


def _num(value: float | None, spec: str = ".3f") -> str:
    return format(value, spec) if finite(value) else "n/a"


_VERDICT_STYLE = {SHIP: "bold green", NO_SHIP: "bold red", INCONCLUSIVE: "yellow"}


_LABELS = {"thumbs_down_rate": "thumbs down", "thumbs_up_rate": "thumbs up", "violation_rate": "violations"}


def _table(title: str, columns: Sequence[str], left: int = 1) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < left else "right", no_wrap=True)
    return table


def _arms_table(result: ABResult) -> Any:
    with_viol = any(s.violation_rate is not None for s in result.arms.values())
    columns = ["arm", "users", "sessions", "breadth", "depth", "up", "down"]
    columns += ["violations"] if with_viol else []
    table = _table("Arms (breadth = returning users, depth = user msgs/session, thumbs share)", columns)
    for s in result.arms.values():
        row = [s.arm, str(s.users), str(s.sessions), _num(s.breadth, ".2%"), _num(s.depth),
               _num(s.thumbs_up_rate, ".1%"), _num(s.thumbs_down_rate, ".1%")]
        table.add_row(*row, *([_num(s.violation_rate, ".2%")] if with_viol else []))
    return table


def _lifts_table(result: ABResult) -> Any:
    columns = ["arm", "metric", "method", "lift", f"{result.confidence:.0%} CI", "p", "var red", "MDE"]
    table = _table(f"Relative lift vs {result.control_arm}", columns, left=3)
    for ch in result.challengers.values():
        for lift in (ch.breadth, ch.depth):
            table.add_row(ch.arm, lift.metric, "delta", _pct(lift.lift), _pct_ci(lift.ci_lo, lift.ci_hi),
                          _num(lift.p_value, ".2g"), "", _num(lift.mde, ".1%"))
            if lift.boot_ci_lo is not None:
                boot = _pct_ci(lift.boot_ci_lo, lift.boot_ci_hi)
                table.add_row("", "", "bootstrap", _pct(lift.lift), boot, "", "", "")
            if (c := lift.cuped) is not None:
                table.add_row("", "", "CUPED", _pct(c.lift), _pct_ci(c.ci_lo, c.ci_hi),
                              _num(c.p_value, ".2g"), _num(c.variance_reduction, ".0%"), "")
    return table


def _guardrails_table(result: ABResult) -> Any:
    columns = ["arm", "guardrail", "control", "arm rate", "diff", f"{result.confidence:.0%} CI", "breach"]
    table = _table(f"Guardrails (arm - control, margin {result.guardrail_margin:g})", columns, left=2)
    for ch in result.challengers.values():
        for g in ch.guardrails:
            breached = ("[red]yes[/red]" if g.breached else "no") if g.evaluated else "n/a"
            ci = f"[{_num(g.ci_lo, '+.2%')}, {_num(g.ci_hi, '+.2%')}]" if g.evaluated else "n/a"
            table.add_row(ch.arm, _LABELS[g.metric], _num(g.control, ".2%"), _num(g.challenger, ".2%"),
                          _num(g.diff, "+.2%"), ci, breached)
    return table


def render_ab(result: ABResult, console: Console | None = None) -> None:
    """Print arms, lifts, guardrails and verdicts as rich tables."""
    from rich.console import Console as RichConsole
    from rich.markup import escape

    console = console or RichConsole()
    console.print(_arms_table(result))
    console.print(_lifts_table(result))
    console.print(_guardrails_table(result))
    srm = result.srm
    console.print(
        f"SRM: chi2={_num(srm.chi2, '.2f')} p={_num(srm.p_value, '.3g')} "
        + ("[bold red]MISMATCH[/bold red]" if srm.mismatch else "ok")
        + f"; users in several arms (excluded): {result.excluded_users}"
        + f"; sessions without arm: {result.unassigned_sessions}",
        highlight=False,
    )
    for ch in result.challengers.values():
        style = _VERDICT_STYLE[ch.verdict]
        reasons = escape("; ".join(ch.reasons))
        console.print(f"[{style}]{escape(ch.arm)}: {ch.verdict}[/{style}] -- {reasons}", highlight=False)


def plot_ab(result: ABResult, path: Path | str) -> Path:
    """Write a PNG of the relative lifts with their CIs; returns the path."""
    path = Path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows: list[tuple[str, float, float, float, str]] = []
    for ch in result.challengers.values():
        for lift in (ch.breadth, ch.depth):
            rows.append((f"{ch.arm} {lift.metric} (delta)", lift.lift, lift.ci_lo, lift.ci_hi, "C0"))
            if lift.boot_ci_lo is not None and lift.boot_ci_hi is not None:
                label = f"{ch.arm} {lift.metric} (bootstrap)"
                rows.append((label, lift.lift, lift.boot_ci_lo, lift.boot_ci_hi, "C1"))
            if lift.cuped is not None:
                c = lift.cuped
                rows.append((f"{ch.arm} {lift.metric} (CUPED)", c.lift, c.ci_lo, c.ci_hi, "C2"))
    fig = Figure(figsize=(7.5, 1.2 + 0.45 * max(len(rows), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (_, point, lo, hi, color) in enumerate(reversed(rows)):
        if finite(point, lo, hi):
            xerr = [[100 * (point - lo)], [100 * (hi - point)]]
            ax.errorbar(100 * point, i, xerr=xerr, fmt="o", color=color, capsize=4)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel(f"relative lift vs {result.control_arm} (%), {result.confidence:.0%} CI")
    verdicts = ", ".join(f"{ch.arm}: {ch.verdict}" for ch in result.challengers.values())
    ax.set_title(f"A/B engagement lifts ({verdicts})" if verdicts else "A/B engagement lifts")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path
