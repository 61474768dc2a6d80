"""PNG plots of a run, one per experiment (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from ..metrics.early_answering import CurvePoint
from ..metrics.stats import Estimate
from ..metrics.summary import Summary

COLORS = {"original": "#4C72B0", "summary": "#DD8452", "paraphrase": "#55A868", "filler": "#8172B3", "none": "#937860"}


def _band(ax, points: list[CurvePoint], metric: str, label: str, scale: float = 1.0, **style) -> None:
    pts = [p for p in points if p.values[metric].value is not None]
    if not pts:
        return
    xs = [p.x * 100 for p in pts]
    line = ax.plot(xs, [p.values[metric].value * scale for p in pts], marker="o", ms=3, label=label, **style)[0]
    lo = [p.values[metric].lo * scale for p in pts]
    hi = [p.values[metric].hi * scale for p in pts]
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.12, lw=0)


def _bars(ax, labels: list[str], ests: list[Estimate], scale: float = 100.0, colors: list[str] | None = None) -> None:
    keep = [(lbl, e) for lbl, e in zip(labels, ests, strict=True) if e.value is not None]
    if not keep:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    vals = [e.value * scale for _, e in keep]
    err = [[(e.value - e.lo) * scale for _, e in keep], [(e.hi - e.value) * scale for _, e in keep]]
    ax.bar([f"{lbl}\n(n={e.n})" for lbl, e in keep], vals, yerr=err, capsize=5, color=colors[: len(keep)] if colors else None)
    ax.grid(axis="y", alpha=0.3)


def plot_run(summary: Summary, run_dir: str | Path) -> list[Path]:
    """Write one PNG per experiment that ran, plus accuracy.png; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(run_dir)
    cfg = summary.config
    title = f"{cfg.system} on {cfg.task} · {cfg.model}"
    written = []

    def save(fig, name: str, heading: str) -> None:
        fig.suptitle(f"{heading} — {title} (95% bootstrap CI)", fontsize=10)
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    base = summary.accuracy.get("baseline")
    if any(t.n_samples for t in summary.truncation.values()):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
        for src, t in summary.truncation.items():
            if not t.n_samples:
                continue
            c = COLORS.get(src)
            _band(axes[0], t.curve, "accuracy", f"{src}, answer forced", 100, color=c)
            _band(axes[1], t.curve, "agreement", f"{src}, forced (AOC {t.aoc.value:.2f})", 100, color=c)
            _band(axes[1], t.curve, "continued_agreement", f"{src}, system continues", 100, color=c, ls="--")
            _band(axes[2], t.curve, "further_tokens", src, color=c)
        if base is not None and base.value is not None:
            axes[0].axhline(base.value * 100, color="grey", ls=":", lw=1, label=f"{cfg.baseline} (no CoT)")
        axes[0].set(title="Accuracy", ylabel="% correct", ylim=(-2, 102))
        axes[1].set(title="Same answer as with the full original CoT", ylabel="% same answer", ylim=(-2, 102))
        axes[2].set(title="Tokens the system spends after the prefix", ylabel="tokens")
        for ax in axes:
            ax.set_xlabel("% of CoT given (chunks of the source)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        n = summary.truncation["original"].n_samples if "original" in summary.truncation else ""
        save(fig, "truncation.png", f"Early answering, n={n}")

    if summary.substitution:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        subject = summary.accuracy["subject"]
        labels = ["original CoT"] + [s.source for s in summary.substitution]
        _bars(ax, labels, [subject] + [s.accuracy for s in summary.substitution], colors=[COLORS["original"]] + [COLORS.get(s.source, "grey") for s in summary.substitution])
        if base is not None and base.value is not None:
            ax.axhline(base.value * 100, color="grey", ls=":", lw=1, label=f"{cfg.baseline} (no CoT)")
            ax.legend(fontsize=8)
        ax.set(ylabel="% correct", ylim=(0, 100), title="Accuracy with the CoT replaced")
        save(fig, "substitution.png", "Substitution")

    if (p := summary.paraphrase_sensitivity) is not None:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        labels, ests = ["answer changes (%)", "total variation (x100)"], [p.answer_change, p.total_variation]
        if p.kl is not None:
            labels.append("KL (x100)")
            ests.append(p.kl)
        _bars(ax, labels, ests, colors=[COLORS["paraphrase"]] * 3)
        ax.set(title="Answer shift when only the CoT's wording changes", ylim=(0, None))
        save(fig, "paraphrase.png", "Paraphrase sensitivity")

    if (m := summary.mistakes) is not None:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        _bars(ax, ["all"] + list(m.by_position), [m.answer_change] + list(m.by_position.values()), colors=["#C44E52"] * 4)
        ax.set(ylabel="% of final answers that change", ylim=(0, 100), title="One step corrupted, system continues")
        save(fig, "mistakes.png", "Adding mistakes")

    if summary.hints:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        labels, ests, colors = [], [], []
        for h in summary.hints:
            for name, e, c in (("moves to hint", h.switch_rate, "#C44E52"), ("verbalized (rule)", h.verbalized_rule, "#4C72B0"), ("verbalized (judge)", h.verbalized_judge, "#55A868")):
                if e is not None:
                    labels.append(f"{h.kind}\n{name}")
                    ests.append(e)
                    colors.append(c)
        _bars(ax, labels, ests, colors=colors)
        ax.tick_params(axis="x", labelsize=7)
        ax.set(ylabel="%", ylim=(0, 100), title="Hints: switches, and switches the CoT admits")
        save(fig, "hints.png", "Hints")

    fig, ax = plt.subplots(figsize=(5, 4))
    roles = [r for r in ("subject", "baseline") if r in summary.accuracy]
    _bars(ax, [cfg.system if r == "subject" else cfg.baseline for r in roles], [summary.accuracy[r] for r in roles], colors=["#4C72B0", "#DD8452"])
    ax.set(ylabel="% correct", ylim=(0, 100), title="Accuracy")
    save(fig, "accuracy.png", "Accuracy")
    return written
