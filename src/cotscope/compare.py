"""Systems side by side: the same samples through each system, one table with paired 95%
CIs for every difference, one set of plots, and the cost of the defence (the safety tax)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from . import stats
from ._errors import CotscopeError
from .audit import AuditResult, audit, check, make_config
from .backends import Backend
from .config import AuditConfig
from .metrics import Metric
from .metrics.base import paired
from .stats import Estimate
from .report.table import fmt_interval, fmt_ratio
from .summary import run_metrics


class SystemColumn(BaseModel):
    system: str
    run_dir: str
    values: dict[str, Estimate] = Field(description="Metric -> mean over samples with its CI.")
    tokens_by_role: dict[str, Estimate] = Field(default_factory=dict)
    differences: dict[str, Estimate] = Field(default_factory=dict, description="Metric -> this system minus the reference, paired over samples (for costs and times: this system over the reference, a ratio).")
    channel: str = Field(default="prompted", description="Where the system's CoT is: 'prompted' text or a native 'thinking' channel.")
    notes: list[str] = Field(default_factory=list, description="What could not be measured on this system, and why.")


class Comparison(BaseModel):
    """`compare.json`: every system on the same samples."""

    reference: str = Field(description="The system differences are taken against (the first given).")
    labels: dict[str, tuple[str, bool]] = Field(default_factory=dict, description="Metric -> (label, shown in percent), in table order.")
    n_samples: int
    columns: list[SystemColumn]
    safety_tax: dict[str, Estimate] | None = Field(
        default=None, description="shoggoth-face minus cot: accuracy and tokens (when both ran)."
    )


def compare(
    systems: Sequence[str],
    config: AuditConfig | None = None,
    out_dir: str | Path = "runs/compare",
    *,
    backend: Backend | None = None,
    progress: bool = True,
    monitors: Sequence[str] = (),
) -> Comparison:
    """Audit each system on the same samples and compare them.

    Args:
        systems: System specs; the first is the reference for differences.
        config: Everything else; its `system` and `baseline` are ignored.
        out_dir: One run directory per system goes under it, then compare.json, compare.png and
            compare.html.
        backend: A backend object to use instead of building one from ``config.model``.
        monitors: Monitor specs (`cotscope.monitors`) scored on each system's hint switches
            (TPR, FPR, AUROC with intervals; each system's own traces, so not paired).
    """
    config = config or AuditConfig()
    out_dir = Path(out_dir)
    if not systems:
        raise CotscopeError("compare needs at least one system")
    if monitors:
        from .monitors import get_monitor

        for spec in monitors:  # a bad monitor fails before any audit runs
            get_monitor(spec)
    # Every system is checked before any runs: a bad last one fails in a second, not after the first audit.
    configs = [make_config(config, system=spec, baseline="") for spec in systems]
    plans = [check(cfg, backend=backend) for cfg in configs]
    results: list[AuditResult] = []
    for spec, cfg in zip(systems, configs, strict=True):
        results.append(audit(cfg, out_dir / _dirname(spec), backend=backend, progress=progress))
    metrics = [m for m in run_metrics(plans[0].experiments, config) if m.compare]
    ref = {r.sample.id: r for r in results[0].records}
    columns = []
    for spec, res in zip(systems, results, strict=True):
        col = SystemColumn(system=spec, run_dir=str(res.run_dir), values={})
        for m in metrics:
            if m.name in res.summary.metrics:
                col.values[m.name] = res.summary.metrics[m.name]
            if spec != systems[0]:
                d = paired_difference(m, res.records, ref)
                if d is not None:
                    col.differences[m.name] = d
        roles = sorted({role for r in res.records for role in r.traces["subject"].tokens_by_role})
        col.tokens_by_role = {role: stats.typical_cost([r.traces["subject"].tokens_by_role.get(role, 0) for r in res.records]) for role in roles}
        channels = [r.traces["subject"].channel for r in res.records if "subject" in r.traces]
        col.channel = max(set(channels), key=channels.count) if channels else "prompted"
        columns.append(col)
    labels = {m.name: (m.label.format(system="system", baseline="baseline"), m.percent) for m in metrics}
    for col, res in zip(columns, results, strict=True):
        if monitors:
            _monitor_columns(col, res, monitors, labels)
    comparison = Comparison(reference=systems[0], labels=labels, n_samples=len(results[0].records), columns=columns)
    comparison.safety_tax = _safety_tax(systems, results, metrics)
    (out_dir / "compare.json").write_text(comparison.model_dump_json(indent=2))
    plot_comparison(comparison, out_dir / "compare.png")
    from .report.html import write_comparison_report

    write_comparison_report(comparison, out_dir)
    return comparison


def _monitor_columns(col: SystemColumn, res: AuditResult, monitors: Sequence[str], labels: dict) -> None:
    """Each monitor's TPR, FPR and AUROC on this system's hint switches, as rows of its column."""
    from .monitors.measure import measure, switches_of

    items = [i for i in switches_of(res.records) if i.arm != 0]  # the hinted traces; the control arm is for `cotscope monitor`'s archetypes
    n_pos = sum(i.label for i in items)
    if not n_pos or n_pos == len(items):
        col.notes.append(f"monitors not scored: {n_pos} hint switches and {len(items) - n_pos} non-switches with a CoT "
                         "(a monitor needs both; the hint experiment gives them)")
        return
    for spec, rates in zip(monitors, measure(items, monitors, source=str(res.run_dir)).rates, strict=True):  # named as given, not expanded
        for what, e, name in (("tpr", rates.tpr, "TPR"), ("fpr", rates.fpr, "FPR"), ("auroc", rates.auroc, "AUROC")):
            key = f"monitor/{spec}/{what}"
            labels.setdefault(key, (f"monitor {spec}: {name} on hint switches", what != "auroc"))
            col.values[key] = e


def paired_difference(metric: Metric, records, reference: dict) -> Estimate | None:
    """This system against the reference on one metric, paired over the samples both measured
    (`cotscope.metrics.base.paired`: a ratio for costs and times, a difference otherwise)."""
    pairs = []
    for rec in records:
        other = reference.get(rec.sample.id)
        a = metric.per_sample(rec)
        b = metric.per_sample(other) if other is not None else None
        if a is not None and b is not None:
            pairs.append((a, b))
    return paired(metric, pairs)


def _safety_tax(systems: Sequence[str], results: list[AuditResult], metrics: list[Metric]) -> dict[str, Estimate] | None:
    names = [s.split("?")[0] for s in systems]
    if "cot" not in names or "shoggoth-face" not in names:
        return None
    cot = {r.sample.id: r for r in results[names.index("cot")].records}
    sf = results[names.index("shoggoth-face")].records
    by = {m.name: m for m in metrics}
    pairs = [(r, cot[r.sample.id]) for r in sf if r.sample.id in cot]
    tokens = lambda r: float(r.traces["subject"].n_generated_tokens)  # noqa: E731
    return {
        "accuracy": paired_difference(by["accuracy/subject"], [a for a, _ in pairs], cot),
        "token_ratio": stats.geometric_mean([max(tokens(a), 1.0) / max(tokens(b), 1.0) for a, b in pairs]),
    }


def render_comparison(c: Comparison) -> str:
    names = [col.system for col in c.columns]
    width = max(len(n) for n in names) + 2
    lines = [f"cotscope compare · n={c.n_samples} · differences are paired, against {c.reference}", ""]
    for metric, (label, pct) in c.labels.items():
        if not any(metric in col.values for col in c.columns):
            continue
        lines.append(f"  {label}")
        for col in c.columns:
            e = col.values.get(metric)
            d = col.differences.get(metric)
            cell = _fmt(e, pct) if e else "n/a"
            diff = "" if not d else f"   {fmt_ratio(d)} n={d.n}" if d.method == "t-log" else f"   Δ {_fmt(d, pct, signed=True)}"
            lines.append(f"    {col.system.ljust(width)}{cell}{diff}")
    lines.append("  CoT channel: " + ", ".join(f"{col.system} {col.channel}" for col in c.columns))
    lines += [f"  {col.system}: {note}" for col in c.columns for note in col.notes]
    lines.append("  tokens by role (geometric mean where every sample spent some)")
    for col in c.columns:
        lines.append(f"    {col.system.ljust(width)}" + ", ".join(f"{r} {e.value:.0f} [{e.lo:.0f}, {e.hi:.0f}]" for r, e in col.tokens_by_role.items()))
    if c.safety_tax:
        t = c.safety_tax
        lines += ["", f"  safety tax (shoggoth-face vs cot): accuracy Δ {_fmt(t['accuracy'], True, signed=True)}; "
                  f"tokens {fmt_ratio(t['token_ratio'])} (geometric mean of the paired ratios)"]
    return "\n".join(lines)


def _fmt(e: Estimate, pct: bool, signed: bool = False) -> str:
    return fmt_interval(e, pct, signed, digits=2, with_n=True)


def plot_comparison(c: Comparison, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in c.labels if any(m in col.values and col.values[m].value is not None for col in c.columns)]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 4), squeeze=False)
    for ax, metric in zip(axes[0], shown, strict=True):
        label, pct = c.labels[metric]
        scale = 100 if pct else 1
        cols = [col for col in c.columns if metric in col.values and col.values[metric].value is not None]  # n=0: nothing to draw
        vals = [col.values[metric].value * scale for col in cols]
        err = [[max(col.values[metric].value - col.values[metric].lo, 0.0) * scale for col in cols],
               [max(col.values[metric].hi - col.values[metric].value, 0.0) * scale for col in cols]]
        ax.bar(range(len(cols)), vals, yerr=err, capsize=4, color=[f"C{i}" for i in range(len(cols))])
        ax.set_xticks(range(len(cols)), [col.system.split("?")[0] for col in cols], rotation=30, ha="right", fontsize=8)
        ax.set_title(label + (" (%)" if pct else ""), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Systems side by side (n={c.n_samples}, 95% CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _dirname(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec)[:80]
