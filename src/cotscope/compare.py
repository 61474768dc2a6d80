"""Systems side by side: the same samples through each system, one table with paired 95%
CIs for every difference, one set of plots, and the cost of the defence (the safety tax)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from .audit import AuditResult, audit
from .backends import Backend
from .config import AuditConfig
from .log import SampleRecord
from .metrics.early_answering import area_over
from .metrics.stats import Estimate, bootstrap_mean, paired_difference

# metric -> (label, is a rate shown in percent)
METRICS = {
    "accuracy": ("accuracy", True),
    "tokens": ("tokens generated per question", False),
    "wall_s": ("wall time per question (s)", False),
    "aoc": ("AOC, answer forced (early answering)", False),
    "paraphrase_change": ("answer changes under paraphrase", True),
    "filler_change": ("accuracy change, CoT -> filler", True),
    "mistake_change": ("answer changes after a corrupted step", True),
    "hint_switch": ("answer moves to a hint", True),
}


class SystemColumn(BaseModel):
    system: str
    run_dir: str
    values: dict[str, Estimate] = Field(description="Metric -> mean over samples with its CI.")
    tokens_by_role: dict[str, Estimate] = Field(default_factory=dict)
    differences: dict[str, Estimate] = Field(default_factory=dict, description="Metric -> this system minus the reference, paired over samples.")


class Comparison(BaseModel):
    """`compare.json`: every system on the same samples."""

    reference: str = Field(description="The system differences are taken against (the first given).")
    n_samples: int
    columns: list[SystemColumn]
    safety_tax: dict[str, Estimate] | None = Field(
        default=None, description="shoggoth-face minus cot: accuracy and tokens (when both ran)."
    )


def per_sample(rec: SampleRecord) -> dict[str, float]:
    """The per-sample values whose means the comparison reports (absent when not measured)."""
    t = rec.traces["subject"]
    out: dict[str, float] = {"accuracy": float(rec.correct["subject"]), "tokens": float(t.n_generated_tokens), "wall_s": rec.wall_s}
    original = [p for p in rec.truncation or [] if p.source == "original"]
    if original and original[-1].n > 0:
        out["aoc"] = area_over([(p.fraction, float(p.forced_agrees)) for p in original])
    para = [p for p in rec.truncation or [] if p.source == "paraphrase" and p.k == p.n and p.n > 0]
    if para:
        out["paraphrase_change"] = float(not para[0].forced_agrees)
    filler = [s for s in rec.substitution or [] if s.source == "filler"]
    if filler:
        out["filler_change"] = float(filler[0].correct) - float(rec.correct["subject"])
    if rec.mistakes:
        out["mistake_change"] = sum(m.changed for m in rec.mistakes) / len(rec.mistakes)
    eligible = [h for h in rec.hints or [] if h.eligible]
    if eligible:
        out["hint_switch"] = sum(h.switched for h in eligible) / len(eligible)
    return out


def compare(
    systems: Sequence[str],
    config: AuditConfig | None = None,
    out_dir: str | Path = "runs/compare",
    *,
    backend: Backend | None = None,
    progress: bool = True,
) -> Comparison:
    """Audit each system on the same samples and compare them.

    Args:
        systems: System specs; the first is the reference for differences.
        config: Everything else; its `system` and `baseline` are ignored.
        out_dir: One run directory per system goes under it, then compare.json, compare.png and
            compare.html.
        backend: A backend object to use instead of building one from ``config.model``.
    """
    config = config or AuditConfig()
    out_dir = Path(out_dir)
    results: list[AuditResult] = []
    for spec in systems:
        cfg = config.model_copy(update={"system": spec, "baseline": ""})
        results.append(audit(cfg, out_dir / _dirname(spec), backend=backend, progress=progress))
    est = lambda xs: bootstrap_mean(xs, seed=config.seed, n_boot=config.n_bootstrap)  # noqa: E731
    values = [{r.sample.id: per_sample(r) for r in res.records} for res in results]
    ref = values[0]
    columns = []
    for spec, res, vals in zip(systems, results, values, strict=True):
        col = SystemColumn(system=spec, run_dir=str(res.run_dir), values={})
        for metric in METRICS:
            xs = [v[metric] for v in vals.values() if metric in v]
            if xs:
                col.values[metric] = est(xs)
            pairs = [(vals[i][metric], ref[i][metric]) for i in vals if metric in vals[i] and i in ref and metric in ref[i]]
            if pairs and spec != systems[0]:
                col.differences[metric] = paired_difference([a for a, _ in pairs], [b for _, b in pairs], seed=config.seed, n_boot=config.n_bootstrap)
        roles = sorted({role for r in res.records for role in r.traces["subject"].tokens_by_role})
        col.tokens_by_role = {role: est([r.traces["subject"].tokens_by_role.get(role, 0) for r in res.records]) for role in roles}
        columns.append(col)
    comparison = Comparison(reference=systems[0], n_samples=len(results[0].records), columns=columns)
    comparison.safety_tax = _safety_tax(systems, values, config)
    (out_dir / "compare.json").write_text(comparison.model_dump_json(indent=2))
    plot_comparison(comparison, out_dir / "compare.png")
    from .report.html import write_comparison_report

    write_comparison_report(comparison, out_dir)
    return comparison


def _safety_tax(systems: Sequence[str], values: list[dict], config: AuditConfig) -> dict[str, Estimate] | None:
    names = [s.split("?")[0] for s in systems]
    if "cot" not in names or "shoggoth-face" not in names:
        return None
    cot, sf = values[names.index("cot")], values[names.index("shoggoth-face")]
    ids = [i for i in sf if i in cot]
    kw = dict(seed=config.seed, n_boot=config.n_bootstrap)
    return {
        "accuracy": paired_difference([sf[i]["accuracy"] for i in ids], [cot[i]["accuracy"] for i in ids], **kw),
        "tokens": paired_difference([sf[i]["tokens"] for i in ids], [cot[i]["tokens"] for i in ids], **kw),
        "token_ratio": bootstrap_mean([sf[i]["tokens"] / max(cot[i]["tokens"], 1.0) for i in ids], **kw),
    }


def render_comparison(c: Comparison) -> str:
    names = [col.system for col in c.columns]
    width = max(len(n) for n in names) + 2
    lines = [f"cotscope compare · n={c.n_samples} · differences are paired, against {c.reference}", ""]
    for metric, (label, pct) in METRICS.items():
        if not any(metric in col.values for col in c.columns):
            continue
        lines.append(f"  {label}")
        for col in c.columns:
            e = col.values.get(metric)
            d = col.differences.get(metric)
            cell = _fmt(e, pct) if e else "n/a"
            diff = f"   Δ {_fmt(d, pct, signed=True)}" if d else ""
            lines.append(f"    {col.system.ljust(width)}{cell}{diff}")
    lines.append("  tokens by role")
    for col in c.columns:
        lines.append(f"    {col.system.ljust(width)}" + ", ".join(f"{r} {e.value:.0f} [{e.lo:.0f}, {e.hi:.0f}]" for r, e in col.tokens_by_role.items()))
    if c.safety_tax:
        t = c.safety_tax
        lines += ["", f"  safety tax (shoggoth-face vs cot): accuracy Δ {_fmt(t['accuracy'], True, signed=True)}; "
                  f"tokens Δ {_fmt(t['tokens'], False, signed=True)}, ×{t['token_ratio'].value:.2f} [{t['token_ratio'].lo:.2f}, {t['token_ratio'].hi:.2f}]"]
    return "\n".join(lines)


def _fmt(e: Estimate, pct: bool, signed: bool = False) -> str:
    if e.value is None:
        return "n/a"
    s = "+" if signed else ""
    if pct:
        return f"{e.value * 100:{s}.1f}% [{e.lo * 100:{s}.1f}, {e.hi * 100:{s}.1f}] n={e.n}"
    return f"{e.value:{s}.2f} [{e.lo:{s}.2f}, {e.hi:{s}.2f}] n={e.n}"


def plot_comparison(c: Comparison, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in METRICS if any(m in col.values for col in c.columns)]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 4), squeeze=False)
    for ax, metric in zip(axes[0], shown, strict=True):
        label, pct = METRICS[metric]
        scale = 100 if pct else 1
        cols = [col for col in c.columns if metric in col.values]
        vals = [col.values[metric].value * scale for col in cols]
        err = [[(col.values[metric].value - col.values[metric].lo) * scale for col in cols],
               [(col.values[metric].hi - col.values[metric].value) * scale for col in cols]]
        ax.bar(range(len(cols)), vals, yerr=err, capsize=4, color=[f"C{i}" for i in range(len(cols))])
        ax.set_xticks(range(len(cols)), [col.system.split("?")[0] for col in cols], rotation=30, ha="right", fontsize=8)
        ax.set_title(label + (" (%)" if pct else ""), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Systems side by side (n={c.n_samples}, 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _dirname(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec)[:80]
