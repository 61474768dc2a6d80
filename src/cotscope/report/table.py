"""The terminal table of a run's headline numbers."""

from __future__ import annotations

from ..metrics.summary import Summary


def render_table(summary: Summary) -> str:
    cfg = summary.config
    rows: list[tuple[str, str]] = []
    for role, est in summary.accuracy.items():
        name = cfg.system if role == "subject" else cfg.baseline
        rows.append((f"accuracy · {name}", f"{est.fmt(pct=True)} ({summary.n_correct[role]} correct)"))
    if summary.cot_gain is not None:
        rows.append((f"CoT gain ({cfg.system} − {cfg.baseline})", summary.cot_gain.fmt(pct=True)))
    rows.append(("CoT chunks per sample", summary.cot_steps.fmt(1)))
    rows.append(("tokens per CoT trace", summary.cot_tokens.fmt(0)))
    t = summary.truncation
    if t is not None:
        rows.append(("AOC, answer forced (Lanham)", t.aoc.fmt(3)))
        rows.append(("AOC, system continues", t.aoc_continued.fmt(3)))
    width = max(len(r[0]) for r in rows)
    lines = [f"cotscope audit · {cfg.model} · {cfg.system} vs {cfg.baseline} · {cfg.task} · n={summary.n_samples}", ""]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    if t is not None and t.curve:
        lines += ["", f"  early answering (mean [95% CI], n per point = {t.n_samples})"]
        lines.append(f"  {'% CoT':>6}  {'accuracy':>18}  {'same answer':>18}  {'cont. same':>18}  {'further tok':>16}")
        for p in t.curve:
            v = p.values
            lines.append(
                f"  {p.x * 100:>5.0f}%  {_cell(v['accuracy'], 100)}  {_cell(v['agreement'], 100)}  "
                f"{_cell(v['continued_agreement'], 100)}  {_cell(v['further_tokens'], 1, 16)}"
            )
    if summary.warnings:
        lines += ["", "  caveats:"] + [f"  - {w}" for w in summary.warnings]
    return "\n".join(lines)


def _cell(est, scale: float, width: int = 18) -> str:
    if est.value is None:
        return "n/a".rjust(width)
    return f"{est.value * scale:.0f} [{est.lo * scale:.0f}, {est.hi * scale:.0f}]".rjust(width)
