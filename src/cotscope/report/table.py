"""The terminal table of a run's headline numbers, its verdicts and caveats."""

from __future__ import annotations

from ..stats import Estimate
from ..summary import Summary


def render_table(summary: Summary) -> str:
    cfg = summary.config
    lines = [f"cotscope audit · {cfg.model} · {cfg.system} vs {cfg.baseline} · {cfg.task} · n={summary.n_samples}", ""]
    if any(summary.n_cut.values()):
        cut = ", ".join(f"{role} {k}" for role, k in summary.n_cut.items() if k)
        lines += [f"  WARNING: CoTs cut off by their token budget ({cut} of {summary.n_samples}); see the caveats.", ""]
    width = max((len(r.metric) for r in summary.table), default=10)
    group = None
    for row in summary.table:
        if row.experiment != group:
            group = row.experiment
            lines.append(f"  {group}")
        lines.append(f"    {row.metric.ljust(width)}  {fmt(row.estimate, row.percent)}")
    with_curves = [(n, c) for n, c in summary.experiments.items() if getattr(c, "curve", None)]
    curves = with_curves[0][1] if with_curves else None
    if curves is not None:
        sources = [n for n, c in with_curves if len(c.curve) == len(curves.curve)]
        lines += ["", f"  early answering: % same answer as the full CoT, answer forced (value [95% CI]; n={curves.n_samples})"]
        lines.append("  " + f"{'% CoT':>6}" + "".join(f"{s:>18}" for s in sources) + f"{'further tokens':>18}")
        for i, p in enumerate(curves.curve):
            cells = "".join(_cell(summary.experiments[s].curve[i].values["agreement"], 100) for s in sources)
            lines.append(f"  {p.x * 100:>5.0f}%{cells}{_cell(p.values['further_tokens'], 1)}")
    if summary.verdicts:
        lines += ["", "  verdicts (shared rules; see cotscope.verdicts):"] + [f"  - {v.line}" for v in summary.verdicts]
    if summary.warnings:
        lines += ["", "  caveats:"] + [f"  - {w}" for w in summary.warnings]
    methods = sorted({r.estimate.method for r in summary.table})
    lines += ["", f"  intervals: 95%, by method: {', '.join(methods)} (see cotscope.stats)"]
    return "\n".join(lines)


FIXED = "(fixed)"  # printed where an interval would be, for a value fixed by definition (method "exact")


def fmt(e: Estimate, percent: bool) -> str:
    if e.value is None:
        return "n/a (n=0)"
    n = f"n={e.n}" + (f" ({e.n_items} items)" if e.n_items and e.n_items != e.n else "")
    if e.method == "exact":
        return (f"{e.value * 100:6.1f}%" if percent else f"{e.value:7.3f}") + f"  {FIXED}  {n}"
    if percent:
        return f"{e.value * 100:6.1f}%  [{e.lo * 100:.1f}, {e.hi * 100:.1f}]  {n}"
    return f"{e.value:7.3f}  [{e.lo:.3f}, {e.hi:.3f}]  {n}"


def fmt_interval(e: Estimate, percent: bool, signed: bool = False, digits: int = 3, with_n: bool = False) -> str:
    """``value [lo, hi]`` in one line: rates in percent with one decimal, others with `digits`."""
    if e.value is None:
        return "n/a"
    s = "+" if signed else ""
    n = f" n={e.n}" if with_n else ""
    if e.method == "exact":
        return (f"{e.value * 100:{s}.1f}%" if percent else f"{e.value:{s}.{digits}f}") + f" {FIXED}{n}"
    if percent:
        return f"{e.value * 100:{s}.1f}% [{e.lo * 100:{s}.1f}, {e.hi * 100:{s}.1f}]{n}"
    return f"{e.value:{s}.{digits}f} [{e.lo:{s}.{digits}f}, {e.hi:{s}.{digits}f}]{n}"


def fmt_ratio(e: Estimate) -> str:
    """A paired ratio of costs (method ``t-log``, `cotscope.metrics.base.paired`): ``× value [lo, hi]``."""
    return f"× {e.value:.2f} [{e.lo:.2f}, {e.hi:.2f}]"


def _cell(est: Estimate, scale: float, width: int = 18) -> str:
    if est.value is None:
        return "n/a".rjust(width)
    if est.method == "exact":  # 100% of the CoT agrees with itself; nothing follows all of it
        return f"{est.value * scale:.0f} {FIXED}".rjust(width)
    return f"{est.value * scale:.0f} [{est.lo * scale:.0f}, {est.hi * scale:.0f}]".rjust(width)
