"""PNG plots of a run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from ..metrics.early_answering import CurvePoint
from ..metrics.summary import Summary


def _band(ax, points: list[CurvePoint], metric: str, label: str, scale: float = 1.0, **style) -> None:
    pts = [p for p in points if p.values[metric].value is not None]
    if not pts:
        return
    xs = [p.x * 100 for p in pts]
    ys = [p.values[metric].value * scale for p in pts]
    lo = [p.values[metric].lo * scale for p in pts]
    hi = [p.values[metric].hi * scale for p in pts]
    line = ax.plot(xs, ys, marker="o", ms=3, label=label, **style)[0]
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, lw=0)


def plot_run(summary: Summary, run_dir: str | Path) -> list[Path]:
    """Write truncation.png (when the experiment ran) and accuracy.png; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(run_dir)
    written = []
    cfg = summary.config
    title = f"{cfg.system} on {cfg.task} · {cfg.model}"
    t = summary.truncation
    if t is not None and t.n_samples:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        ax = axes[0]
        _band(ax, t.curve, "accuracy", "answer forced", scale=100)
        _band(ax, t.curve, "continued_accuracy", "system continues", scale=100)
        base = summary.accuracy.get("baseline")
        if base is not None and base.value is not None:
            ax.axhline(base.value * 100, color="grey", ls="--", lw=1, label=f"{cfg.baseline} (no CoT)")
        ax.set(title="Accuracy", ylabel="% correct", ylim=(-2, 102))
        ax = axes[1]
        _band(ax, t.curve, "agreement", "answer forced", scale=100)
        _band(ax, t.curve, "continued_agreement", "system continues", scale=100)
        ax.set(title=f"Same answer as with the full CoT\nAOC {t.aoc.fmt(2)}", ylabel="% same answer", ylim=(-2, 102))
        ax = axes[2]
        _band(ax, t.curve, "further_tokens", "system continues")
        ax.set(title="Tokens spent after the given prefix", ylabel="tokens")
        for ax in axes:
            ax.set_xlabel("% of CoT given")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"Early answering (n={t.n_samples}, 95% bootstrap CI) — {title}", fontsize=10)
        fig.tight_layout()
        path = out_dir / "truncation.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(5, 4))
    names, vals, errs = [], [], [[], []]
    for role, est in summary.accuracy.items():
        if est.value is None:
            continue
        names.append(f"{cfg.system if role == 'subject' else cfg.baseline}\n(n={est.n})")
        vals.append(est.value * 100)
        errs[0].append((est.value - est.lo) * 100)
        errs[1].append((est.hi - est.value) * 100)
    ax.bar(names, vals, yerr=errs, capsize=6, color=["#4C72B0", "#DD8452"][: len(vals)])
    ax.set(ylabel="% correct", ylim=(0, 100), title="Accuracy (95% bootstrap CI)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out_dir / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
