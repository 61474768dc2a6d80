"""Plot helpers shared by experiments: their metrics as bars, early-answering curves."""

from __future__ import annotations

import textwrap
from typing import Any

from ..stats import Estimate

COLORS = {"original": "#4C72B0", "summary": "#DD8452", "paraphrase": "#55A868", "filler": "#8172B3", "none": "#937860"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(ax, labels: list[str], ests: list[Estimate], scale: float = 100.0, colors: list[str] | None = None) -> None:
    """Bars with their CI as error bars and n under each label."""
    keep = [(lbl, e) for lbl, e in zip(labels, ests, strict=True) if e is not None and e.value is not None]
    if not keep:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    vals = [e.value * scale for _, e in keep]
    err = [[(e.value - e.lo) * scale for _, e in keep], [(e.hi - e.value) * scale for _, e in keep]]
    names = [f"{textwrap.fill(lbl, 18)}\n(n={e.n})" for lbl, e in keep]  # wrapped: long labels do not overlap
    ax.bar(names, vals, yerr=err, capsize=5, color=colors[: len(keep)] if colors else None)
    ax.grid(axis="y", alpha=0.3)


def metric_bars(exp: Any, summary: Any) -> Any:
    """The experiment's metrics that have data, as bars (rates in percent, others as they are)."""
    mine = [m for m in exp.metrics() if (e := summary.metrics.get(m.name)) is not None and e.value is not None]
    if not mine:
        return None
    plt = _plt()
    rates = [m for m in mine if m.percent]
    others = [m for m in mine if not m.percent]
    panels = [p for p in (rates, others) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 1.6 * len(mine) + 2), 4.4), squeeze=False)
    for ax, group in zip(axes[0], panels, strict=True):
        bars(ax, [m.label.format(**summary.labels) for m in group], [summary.metrics[m.name] for m in group],
             scale=100.0 if group is rates else 1.0, colors=["#C44E52"] * len(group))
        ax.tick_params(axis="x", labelsize=7)
        ax.set(ylabel="%" if group is rates else "value")
        if group is rates:  # a difference of rates may go below 0
            ax.set_ylim(min(0.0, min(summary.metrics[m.name].lo for m in group) * 100), 100)
    return fig


def curves_figure(exp: Any, summary: Any) -> Any:
    """Accuracy, agreement and further tokens against the % of CoT given, for this curve
    experiment's source (the original CoT drawn beside it, dotted, when it ran too)."""
    curves = summary.experiments.get(exp.name)
    if curves is None or not curves.n_samples:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    shown = [(exp.source, curves, exp.name, "-")]
    original = next((n for n, c in summary.experiments.items() if getattr(c, "source", None) == "original"), None)
    if original is not None and original != exp.name and summary.experiments[original].n_samples:
        shown.append(("original", summary.experiments[original], original, ":"))
    for src, cv, name, ls in shown:
        c = COLORS.get(src)
        aoc = summary.metrics.get(f"{name}/aoc")
        aoc_txt = f" (AOC {aoc.value:.2f})" if aoc is not None and aoc.value is not None else ""
        _band(axes[0], cv.curve, "accuracy", f"{src}, answer forced", 100, color=c, ls=ls)
        _band(axes[1], cv.curve, "agreement", f"{src}, forced{aoc_txt}", 100, color=c, ls=ls)
        if ls == "-":
            _band(axes[1], cv.curve, "continued_agreement", f"{src}, system continues", 100, color=c, ls="--")
        _band(axes[2], cv.curve, "further_tokens", src, color=c, ls=ls)
    base = summary.metrics.get("accuracy/baseline")
    if base is not None and base.value is not None:
        axes[0].axhline(base.value * 100, color="grey", ls=":", lw=1, label=f"{summary.labels['baseline']} (no CoT)")
    axes[0].set(title="Accuracy", ylabel="% correct", ylim=(-2, 102))
    axes[1].set(title="Same answer as with the full original CoT", ylabel="% same answer", ylim=(-2, 102))
    axes[2].set(title="Tokens the system spends after the prefix", ylabel="tokens")
    for ax in axes:
        ax.set_xlabel("% of CoT given (chunks of the source)")
        ax.grid(alpha=0.3)
    # Legends below the axes, where they cover no curve.
    for ax in axes:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return fig


def _band(ax, points: list, metric: str, label: str, scale: float = 1.0, **style) -> None:
    pts = [p for p in points if p.values[metric].value is not None]
    if not pts:
        return
    xs = [p.x * 100 for p in pts]
    line = ax.plot(xs, [p.values[metric].value * scale for p in pts], marker="o", ms=3, label=label, **style)[0]
    lo = [p.values[metric].lo * scale for p in pts]
    hi = [p.values[metric].hi * scale for p in pts]
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.12, lw=0)
