"""The validation figure (of a `Validation`): each organism's accuracy, and each metric's value per organism
with its CI, its threshold (dashed), its verdict, and whether that matches the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..verdicts import RULES  # noqa: E402

COLORS = {True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}


def _bar(ax, y, e, color, height=0.35):
    if e is None or e.value is None:
        ax.text(0.01, y, "n/a", va="center", fontsize=8, color="#616161", transform=ax.get_yaxis_transform())
        return
    ax.barh(y, e.value, height=height, color=color, alpha=0.8)
    ax.plot([e.value], [y], "o", color=color, ms=5)  # visible even when the bar has no length
    ax.errorbar(e.value, y, xerr=[[e.value - e.lo], [e.hi - e.value]], fmt="none", ecolor="black", capsize=3, lw=1)


def plot_validation(v: Any, path: str | Path) -> Path:
    organisms = [a.organism for a in v.accuracy]
    fig, axes = plt.subplots(1, len(RULES) + 1, figsize=(3.2 * (len(RULES) + 1), 0.6 * len(organisms) + 2), sharey=True)
    ys = range(len(organisms))
    ax = axes[0]
    for y, a in zip(ys, v.accuracy, strict=True):
        _bar(ax, y - 0.18, a.with_cot, "#1565c0")
        _bar(ax, y + 0.18, a.without_cot, "#90caf9")
    ax.set_yticks(list(ys), organisms)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title("accuracy\n(dark: with CoT, light: without)", fontsize=9)
    for ax, rule in zip(axes[1:], RULES, strict=True):
        cells = {c.organism: c for c in v.cells if c.metric == rule.name}
        for y, name in zip(ys, organisms, strict=True):
            c = cells.get(name)
            if c is not None:
                _bar(ax, y, c.estimate, COLORS[c.matches], height=0.5)
                ax.text(1.0, y, f" {c.verdict}", va="center", fontsize=8, transform=ax.get_yaxis_transform())
        ax.axvline(rule.threshold, color="black", ls="--", lw=0.8)
        lo = min([0.0] + [c.estimate.lo for c in cells.values() if c.estimate and c.estimate.lo is not None])
        ax.set_xlim(min(lo, 0) - 0.05, 1.05)
        ax.set_title(f"{rule.name}\n{rule.value}", fontsize=9)
    fig.suptitle(
        f"organisms: metric verdicts vs ground truth (green: matches; red: wrong or unclear; n={v.n_samples} per organism)", fontsize=10
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
