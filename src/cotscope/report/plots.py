"""PNG plots of a run: accuracy, then one per experiment that has something to draw (each
experiment draws its own; matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..experiments import Experiment, get_experiments
from ..experiments._plots import bars
from ..summary import Summary


def plot_run(summary: Summary, run_dir: str | Path, experiments: Sequence[Experiment] | None = None) -> list[Path]:
    """Write accuracy.png and one ``<experiment>.png`` per experiment with data; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiments = list(experiments) if experiments is not None else get_experiments(summary.config)
    out_dir = Path(run_dir)
    cfg = summary.config
    title = f"{cfg.system} on {cfg.task} · {cfg.model}"
    written = []

    def save(fig, name: str, heading: str) -> None:
        fig.suptitle(f"{heading} — {title} (95% CI)", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(5, 4))
    names = [n for n in ("accuracy/subject", "accuracy/baseline") if n in summary.metrics]
    labels = [cfg.system if n.endswith("subject") else cfg.baseline for n in names]
    bars(ax, labels, [summary.metrics[n] for n in names], colors=["#4C72B0", "#DD8452"])
    ax.set(ylabel="% correct", ylim=(0, 100), title="Accuracy")
    save(fig, "accuracy", "Accuracy")
    for exp in experiments:
        fig = exp.plot(summary)
        if fig is not None:
            save(fig, exp.name, exp.title or exp.name)
    return written
