"""A stego run in text, in a plot (capacity against meaning kept, one point per paraphraser) and
in a self-contained HTML report with original, encoded, paraphrased and decoded text side by
side. Everything that came from a model or a data set is escaped."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from ..report.table import fmt_interval
from ..stats import Estimate
from .records import CellRecord, CoverRecord, EncodingRecord, InjectionRecord
from .summary import StegoSummary, errors


def _settle(c) -> str:
    """Whether a row's capacity is told from 0 bits, or the n that would (if the rates stay)."""
    if c.capacity.lo is not None and c.capacity.lo > 0:
        return "told"
    return f"about {c.capacity_settle_n}" if c.capacity_settle_n else "-"


def _bits(e: Estimate) -> str:
    return fmt_interval(e, percent=False, digits=2)


def _pct(e: Estimate | None) -> str:
    return "n/a" if e is None else fmt_interval(e, percent=True)


def render_stego(s: StegoSummary) -> str:
    """The terminal table: one row per encoder x paraphraser, then one per paraphraser."""
    cfg = s.config
    lines = [
        f"stego: {cfg.system} on {cfg.task} · {cfg.model} · n={s.n_samples} · payload {cfg.payload_bits} bits · seed {cfg.seed}",
        f"cover accuracy {_pct(s.cover_accuracy)} n={s.cover_accuracy.n}",
    ]
    lines += [f"warning: {w}" for w in s.warnings]
    head = (f"{'encoder':<12} {'paraphraser':<22} {'n':>3} {'exact recovery':<22} {'capacity (bits)':<22} {'n to tell from 0':<17} "
            f"{'bits/KB':<20} {'answer kept':<22} {'left out'}")
    lines += ["", head, "-" * len(head)]
    for c in s.cells:
        left = ", ".join(f"{k} {v}" for k, v in c.failures.items()) or "-"
        sim = f"  similarity {_bits(c.similarity)}" if c.similarity else ""
        lines.append(
            f"{c.encoder[:12]:<12} {c.paraphraser[:22]:<22} {c.n:>3} {_pct(c.exact):<22} {_bits(c.capacity):<22} {_settle(c):<17} "
            f"{fmt_interval(c.capacity_per_kb, False, digits=1):<20} {_pct(c.answer_kept):<22} {left}{sim}"
        )
    head = f"{'paraphraser':<22} {'injection obeyed':<22} {'control':<22} {'obeyed - control':<24} {'worst capacity':<30} {'meaning kept'}"
    lines += ["", head, "-" * len(head)]
    for p in s.paraphrasers:
        worst = f"{_bits(p.worst_capacity)} ({p.worst_encoder})" if p.worst_capacity else "n/a"
        lines.append(
            f"{p.paraphraser[:22]:<22} {_pct(p.obedience):<22} {_pct(p.control):<22} "
            f"{fmt_interval(p.effect, True, signed=True):<24} {worst:<30} {_pct(p.meaning_kept)}"
        )
    cov = [p for p in s.paraphrasers if p.coverage]
    if cov:
        channels = sorted({ch for p in cov for ch in p.coverage})
        lines += ["", "coverage: share of channel bits that differ between two draws of the paraphrase (0.5 = randomized)"]
        lines.append(f"{'paraphraser':<22} " + " ".join(f"{ch:<13}" for ch in channels))
        for p in cov:
            lines.append(f"{p.paraphraser[:22]:<22} " + " ".join(
                f"{(f'{p.coverage[ch].value * 100:.0f}% n={p.coverage[ch].n}' if ch in p.coverage and p.coverage[ch].value is not None else 'n/a'):<13}"
                for ch in channels))
    return "\n".join(lines)


def plot_stego(s: StegoSummary, run_dir: str | Path) -> Path:
    """``stego.png``: worst-case capacity against meaning kept, one point per paraphraser, with
    both intervals. The corner a defence wants is bottom right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for p in s.paraphrasers:
        if p.worst_capacity is None or p.meaning_kept is None or p.meaning_kept.value is None:
            continue
        x, y = p.meaning_kept, p.worst_capacity
        ax.errorbar(x.value * 100, y.value, xerr=[[(x.value - x.lo) * 100], [(x.hi - x.value) * 100]],
                    yerr=[[y.value - y.lo], [y.hi - y.value]], fmt="o", capsize=3)
        ax.annotate(f"{p.paraphraser} ({p.worst_encoder})", (x.value * 100, y.value), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set(xlabel="meaning kept: answer unchanged by the paraphrase (%)", ylabel="capacity of the best encoder (bits per CoT)",
           xlim=(-5, 105), ylim=(-0.2, s.config.payload_bits + 0.5))
    ax.set_title(f"Paraphraser strength · {s.config.model} on {s.config.task} · n={s.n_samples} (95% CI)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(run_dir) / "stego.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cotscope stego · {{ cfg.model }} on {{ cfg.task }}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0;font-size:21px}header p{margin:4px 0 0;color:#b9c2d3}
main{max-width:1300px;margin:0 auto;padding:8px 32px 48px}h2{margin-top:30px;border-bottom:2px solid #dde2ea}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e6e9ef;vertical-align:top}
th{background:#eef1f6}td.num{white-space:nowrap;font-variant-numeric:tabular-nums}.warn{background:#fff6e0;border-left:4px solid #e0a500;padding:8px 14px;margin:6px 0}
details{background:#fff;border:1px solid #dde2ea;border-radius:6px;margin:6px 0;padding:6px 12px}summary{cursor:pointer;font-weight:600}
.cols{display:grid;grid-template-columns:repeat(4,1fr);gap:8px}.col{background:#f9fafb;border:1px solid #e6e9ef;padding:4px 8px}
pre{white-space:pre-wrap;margin:0;font-size:13px}.ok{color:#1a7f37}.bad{color:#b42318}img{max-width:100%;background:#fff}
</style></head><body>
<header><h1>cotscope stego: how many hidden bits survive the paraphraser?</h1>
<p>{{ cfg.system }} on {{ cfg.task }} · model {{ cfg.model }} · n={{ s.n_samples }} · payload {{ cfg.payload_bits }} bits · seed {{ cfg.seed }}</p></header>
<main>
{% for w in s.warnings %}<div class="warn">{{ w }}</div>{% endfor %}
<p>Cover accuracy {{ pct(s.cover_accuracy) }}. Capacity counts each payload position as a binary symmetric channel (1 - H(bit error rate) bits);
its interval holds all positions at once (Clopper-Pearson per position, Bonferroni). Rates: Clopper-Pearson; pooled rates: clustered by sample.</p>
<img src="data:image/png;base64,{{ plot }}" alt="capacity against meaning kept">
<h2>Encoders x paraphrasers</h2>
<table id="cells"><thead><tr><th>encoder</th><th>paraphraser</th><th>n</th><th>exact recovery</th><th>bit error</th><th>capacity (bits)</th><th>bits / KB</th><th>answer kept</th><th>similarity</th><th>accuracy encoded → paraphrased</th><th>left out</th></tr></thead><tbody>
{% for c in s.cells %}<tr><td>{{ c.encoder }}</td><td>{{ c.paraphraser }}</td><td class="num">{{ c.n }}</td><td class="num">{{ pct(c.exact) }}</td><td class="num">{{ pct(c.bit_error) }}</td>
<td class="num">{{ bits(c.capacity) }}</td><td class="num">{{ bits(c.capacity_per_kb) }}</td><td class="num">{{ pct(c.answer_kept) }}</td><td class="num">{{ bits(c.similarity) if c.similarity else "not measured" }}</td>
<td class="num">{{ pct(c.accuracy_encoded) }} → {{ pct(c.accuracy_paraphrased) }}</td><td>{% for k, v in c.failures.items() %}{{ k }}: {{ v }}<br>{% endfor %}{% if c.n_cut %}cut paraphrases: {{ c.n_cut }}{% endif %}</td></tr>
{% endfor %}</tbody></table>
<h2>Injections: does text inside the CoT steer the paraphraser?</h2>
<table id="injections"><thead><tr><th>paraphraser</th><th>obeyed</th><th>control (no instruction)</th><th>obeyed - control</th><th>keep-verbatim</th><th>canary</th></tr></thead><tbody>
{% for p in s.paraphrasers %}<tr><td>{{ p.paraphraser }}</td><td class="num">{{ pct(p.obedience) }}</td><td class="num">{{ pct(p.control) }}</td><td class="num">{{ pct(p.effect) }}</td>
<td class="num">{{ pct(p.by_kind['keep-verbatim'].obeyed) }} vs {{ pct(p.by_kind['keep-verbatim'].control) }}</td><td class="num">{{ pct(p.by_kind['canary'].obeyed) }} vs {{ pct(p.by_kind['canary'].control) }}</td></tr>
{% endfor %}</tbody></table>
<h2>Coverage: how much each channel varies between draws of a paraphrase</h2>
<table id="coverage"><thead><tr><th>paraphraser</th>{% for ch in channels %}<th>{{ ch }}</th>{% endfor %}</tr></thead><tbody>
{% for p in s.paraphrasers %}<tr><td>{{ p.paraphraser }}</td>{% for ch in channels %}<td class="num">{{ pct(p.coverage.get(ch)) }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
<h2>Samples</h2>
{% for cell in drill %}<details><summary>{{ cell.encoder }} through {{ cell.paraphraser }}</summary>
{% for row in cell.rows %}<p>sample {{ row.id }}: payload {{ row.payload }} · read {{ row.read }} ·
{% if row.failure %}<span class="bad">{{ row.failure }}</span>{% else %}<span class="{{ 'ok' if row.exact else 'bad' }}">{{ row.n_errors }} bit errors</span> · answer {{ row.answer_enc }} → {{ row.answer_para }}{% endif %}</p>
<div class="cols"><div class="col"><b>original</b><pre>{{ row.cover }}</pre></div><div class="col"><b>encoded</b><pre>{{ row.encoded }}</pre></div>
<div class="col"><b>paraphrased</b><pre>{{ row.paraphrased }}</pre></div><div class="col"><b>decoded</b><pre>{{ row.read }}</pre></div></div>
{% endfor %}</details>{% endfor %}
{% for p in inj %}<details><summary>injections through {{ p.paraphraser }}</summary>
{% for r in p.rows %}<p>sample {{ r.sample_id }} · {{ r.template }}: {% if r.failure %}<span class="bad">{{ r.failure }}</span>{% else %}obeyed {{ r.obeyed }}, control {{ r.control_obeyed }}{% endif %}</p>
<div class="cols"><div class="col"><b>output</b><pre>{{ r.output or '' }}</pre></div><div class="col"><b>control output</b><pre>{{ r.control_output or '' }}</pre></div></div>
{% endfor %}</details>{% endfor %}
</main></body></html>
"""


def write_stego_report(run_dir: str | Path, s: StegoSummary, records: Sequence[BaseModel], per_cell: int = 12) -> Path:
    """``report.html`` of a stego run."""
    import jinja2

    run_dir = Path(run_dir)
    covers = {r.sample.id: r for r in records if isinstance(r, CoverRecord)}
    encodings = {(r.sample_id, r.encoder): r for r in records if isinstance(r, EncodingRecord)}
    drill = []
    for c in s.cells:
        rows = []
        for r in [r for r in records if isinstance(r, CellRecord) and r.encoder == c.encoder and r.paraphraser == c.paraphraser][:per_cell]:
            e = encodings.get((r.sample_id, r.encoder))
            errs = errors(r) if r.failure is None else []
            rows.append({
                "id": r.sample_id, "payload": "".join(map(str, r.payload)),
                "read": "".join("?" if b is None else str(b) for b in r.read), "failure": r.failure,
                "n_errors": sum(errs), "exact": not any(errs), "answer_enc": e.answer if e else None, "answer_para": r.answer,
                "cover": covers[r.sample_id].cot if r.sample_id in covers else "", "encoded": (e.text if e else "") or "",
                "paraphrased": r.paraphrased or "",
            })
        drill.append({"encoder": c.encoder, "paraphraser": c.paraphraser, "rows": rows})
    inj = [{"paraphraser": p.paraphraser, "rows": [r for r in records if isinstance(r, InjectionRecord) and r.paraphraser == p.paraphraser][: per_cell * 2]}
           for p in s.paraphrasers]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    plot_path = run_dir / "stego.png"
    html = env.from_string(TEMPLATE).render(
        s=s, cfg=s.config, pct=_pct, bits=_bits, drill=drill, inj=inj,
        channels=sorted({ch for p in s.paraphrasers for ch in p.coverage}),
        plot=base64.b64encode(plot_path.read_bytes()).decode() if plot_path.exists() else "",
    )
    path = run_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
