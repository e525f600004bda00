"""The report's plots: matplotlib (Agg backend) figures returned as inline ``data:image/png;base64`` URIs.

Each function takes the generation summaries (see :mod:`characterflywheel.report.data`) and returns
None when the run has nothing to plot for it, so the page leaves the plot out. Interval bars are the
figures' own CIs (``lo``/``hi``); points without an interval are drawn without a bar.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from characterflywheel.report import data as rd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

Summary = dict[str, Any]
_COLORS = {"child": "#1f77b4", "parent": "#7f7f7f", "reference": "#9467bd", "truth": "#2ca02c",
           "proxy": "#d62728", "annotators": "#ff7f0e"}
_LOG_SCALE_RATIO = 100.0  # counts spanning more than this factor get a log axis


def _new_figure(width: float = 8.0, height: float = 3.2, ncols: int = 1, nrows: int = 1
                ) -> tuple[MplFigure, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, axes


def _data_uri(figure: MplFigure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _generations(summaries: Sequence[Summary]) -> list[int]:
    return [int(s["generation"]) for s in summaries]


def _error_series(axes: Axes, summaries: Sequence[Summary], get: Callable[[Summary], rd.Reading | None],
                  label: str, color: str, offset: float = 0.0, marker: str = "o") -> bool:
    """Points with CI bars at each generation that has the figure; False when none has it."""
    xs, ys, lows, highs = [], [], [], []
    for summary in summaries:
        found = get(summary)
        if found is None:
            continue
        xs.append(int(summary["generation"]) + offset)
        ys.append(found.value)
        lows.append(found.value - found.lo if found.has_interval else 0.0)
        highs.append(found.hi - found.value if found.has_interval else 0.0)
    if not xs:
        return False
    axes.errorbar(xs, ys, yerr=[[max(v, 0.0) for v in lows], [max(v, 0.0) for v in highs]], fmt=marker + "-",
                  color=color, label=label, capsize=4, linewidth=1.2, markersize=5)
    return True


def _finish(axes: Axes, summaries: Sequence[Summary], title: str, ylabel: str, line: float | None = None) -> None:
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("generation")
    axes.set_ylabel(ylabel)
    axes.set_xticks(_generations(summaries))
    if line is not None:
        axes.axhline(line, color="black", linewidth=0.8, linestyle=":")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)


def ab_lifts(summaries: Sequence[Summary]) -> str | None:
    """A/B breadth and depth lift (challenger minus champion) per generation with CIs; with a
    holdout arm, also the champion's and challenger's lifts over generation 0."""
    from matplotlib.ticker import PercentFormatter

    figure, axes = _new_figure(ncols=2)
    drawn = False
    for column, metric in enumerate(("breadth", "depth")):
        ax = axes[0][column]
        drawn |= _error_series(ax, summaries, lambda s, m=metric: rd.lift(s, m), "challenger vs champion",
                               _COLORS["child"])
        for offset, arm, color in ((0.08, "challenger", _COLORS["reference"]), (-0.08, "champion", _COLORS["parent"])):
            drawn |= _error_series(ax, summaries, lambda s, m=metric, a=arm: rd.lift(s, m, over_generation0=a),
                                   f"{arm} vs generation 0 (holdout)", color, offset, "s")
        relative = any(found.relative for s in summaries if (found := rd.lift(s, metric)) is not None)
        title = f"A/B {metric} lift (" + ("challenger / champion - 1)" if relative else "challenger - champion)")
        _finish(ax, summaries, title, "relative lift" if relative else "lift", line=0.0)
        if relative:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return _data_uri(figure) if drawn else None


def instruction_rates(summaries: Sequence[Summary]) -> str | None:
    """Instruction-following and violation rates of child and parent per generation with CIs."""
    figure, axes = _new_figure(ncols=2)
    drawn = False
    for column, (kind, title) in enumerate((("if", "instruction following rate"),
                                            ("violation", "violation rate"))):
        ax = axes[0][column]
        for offset, who in ((-0.05, "parent"), (0.05, "child")):
            drawn |= _error_series(ax, summaries, lambda s, k=kind, w=who: rd.rate(s, k, w), who,
                                   _COLORS[who], offset)
        _finish(ax, summaries, title, "rate")
    return _data_uri(figure) if drawn else None


def win_rates(summaries: Sequence[Summary]) -> str | None:
    """Win rates vs parent and vs reference (reward models, annotators) per generation with CIs."""
    figure, axes = _new_figure(ncols=2)
    drawn = False
    for column, opponent in enumerate(("parent", "reference")):
        ax = axes[0][column]
        drawn |= _error_series(ax, summaries, lambda s, o=opponent: rd.win_rate(s, o, "reward_model"),
                               "reward models", _COLORS["child"], -0.05)
        drawn |= _error_series(ax, summaries, lambda s, o=opponent: rd.win_rate(s, o, "annotators"),
                               "annotators", _COLORS["annotators"], 0.05, marker="s")
        _finish(ax, summaries, f"child win rate vs {opponent}", "win rate", line=0.5)
    return _data_uri(figure) if drawn else None


def reward_hacking(summaries: Sequence[Summary]) -> str | None:
    """Reward-model score (proxy) and hidden-landscape P(continue) (truth) of child and parent.

    Only for runs with a hidden landscape (``truth.landscape_p_continue``); None otherwise. The two
    measures have different scales, so each has its own axis; where the proxy climbs and the truth
    stays flat or falls, the policy is exploiting the reward model.
    """
    if not rd.has_truth(list(summaries)):
        return None
    figure, axes = _new_figure(width=8.0, height=3.6)
    proxy_axes = axes[0][0]
    truth_axes = proxy_axes.twinx()
    for axis, measure, color, label in ((proxy_axes, "rm_score", _COLORS["proxy"], "reward-model score"),
                                        (truth_axes, "landscape_p_continue", _COLORS["truth"],
                                         "hidden truth P(continue)")):
        for who, style in (("child", "-"), ("parent", ":")):
            points = [(int(s["generation"]), rd.truth_series(s, measure, who)) for s in summaries]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                axis.plot([x for x, _ in points], [y for _, y in points], style, marker="o", color=color,
                          label=f"{label} ({who})", linewidth=1.5 if who == "child" else 1.0)
        axis.set_ylabel(label, color=color)
    _finish(proxy_axes, summaries, "reward-hacking view: proxy vs hidden truth", "reward-model score")
    proxy_axes.set_ylabel("reward-model score", color=_COLORS["proxy"])
    handles, labels = [], []
    for axis in (proxy_axes, truth_axes):
        h, lab = axis.get_legend_handles_labels()
        handles += h
        labels += lab
    proxy_axes.legend(handles, labels, fontsize=8, loc="best")
    return _data_uri(figure)


def style_features(summaries: Sequence[Summary], ncols: int = 4) -> str | None:
    """Each style feature's rate in parent and child replies per generation; flagged points in red."""
    names: list[str] = []
    for summary in summaries:
        for feature in rd.style_features(summary):
            if feature.name not in names:
                names.append(feature.name)
    if not names:
        return None
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    figure, axes = _new_figure(width=2.6 * ncols + 0.6, height=2.4 * nrows + 0.4, ncols=ncols, nrows=nrows)
    for index, name in enumerate(names):
        ax = axes[index // ncols][index % ncols]
        rows = [(int(s["generation"]), f) for s in summaries for f in rd.style_features(s) if f.name == name]
        for who in ("parent", "child"):
            points = [(x, getattr(f, who)) for x, f in rows if getattr(f, who) is not None]
            if points:
                ax.plot([x for x, _ in points], [y for _, y in points], "o-", color=_COLORS[who], label=who,
                        markersize=4)
        flagged = [(x, f.child) for x, f in rows if f.flagged and f.child is not None]
        if flagged:
            ax.scatter([x for x, _ in flagged], [y for _, y in flagged], s=90, facecolors="none",
                       edgecolors="red", linewidths=1.5, label="flagged", zorder=3)
        _finish(ax, summaries, name, "rate")
    for index in range(len(names), nrows * ncols):
        axes[index // ncols][index % ncols].set_visible(False)
    return _data_uri(figure)


def data_funnel(summaries: Sequence[Summary]) -> str | None:
    """Data counts per stage (the funnel), one bar group per stage, one bar per generation."""
    per_generation = [(int(s["generation"]), rd.data_counts(s)) for s in summaries]
    per_generation = [(g, c) for g, c in per_generation if c]
    if not per_generation:
        return None
    keys: list[str] = []
    for _, counts in per_generation:
        keys += [k for k in counts if k not in keys]
    figure, axes = _new_figure(width=max(8.0, 0.7 * len(keys) + 2), height=3.6)
    ax = axes[0][0]
    width = 0.8 / len(per_generation)
    for index, (generation, counts) in enumerate(per_generation):
        xs = [k + index * width - 0.4 + width / 2 for k in range(len(keys))]
        ax.bar(xs, [counts.get(key, 0.0) for key in keys], width=width, label=f"gen {generation}")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=30, ha="right", fontsize=8)
    positive = [v for _, counts in per_generation for v in counts.values() if v > 0]
    if positive and max(positive) / min(positive) > _LOG_SCALE_RATIO:
        ax.set_yscale("log")
    ax.set_ylabel("count")
    ax.set_title("data counts per stage", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncols=min(len(per_generation), 6))
    return _data_uri(figure)


def stage_seconds(summaries: Sequence[Summary]) -> str | None:
    """Wall time of each stage, stacked per generation."""
    rows = [(int(s["generation"]), {k: v for k, v in ((k, rd.number(v)) for k, v in
                                                      (s.get("stage_seconds") or {}).items()) if v is not None})
            for s in summaries if isinstance(s.get("stage_seconds"), dict)]
    rows = [(g, times) for g, times in rows if times]
    if not rows:
        return None
    stages: list[str] = []
    for _, times in rows:
        stages += [k for k in times if k not in stages]
    figure, axes = _new_figure(height=3.2)
    ax = axes[0][0]
    import matplotlib

    palette = matplotlib.colormaps["tab20"]
    bottoms = [0.0] * len(rows)
    for index, stage in enumerate(stages):
        heights = [times.get(stage, 0.0) for _, times in rows]
        ax.bar([g for g, _ in rows], heights, bottom=bottoms, label=stage, color=palette(index % 20))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_xticks([g for g, _ in rows])
    ax.set_xlabel("generation")
    ax.set_ylabel("seconds")
    ax.set_title("wall time per stage", fontsize=10)
    ax.legend(fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3, axis="y")
    return _data_uri(figure)
