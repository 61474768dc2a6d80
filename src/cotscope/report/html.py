"""One self-contained HTML report per run: headline table, plots, config and a per-sample
drill-down. Everything that came from a model or a data set is escaped (Jinja2 autoescape);
nothing in a trace is ever executed. Images are embedded, so the file needs no network."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from .._errors import CotscopeError
from ..config import AuditConfig
from ..log import RunStore, SampleRecord
from ..metrics.summary import Summary, summarize

PLOTS = ("truncation", "substitution", "paraphrase", "mistakes", "hints", "accuracy")

TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cotscope · {{ cfg.system }} on {{ cfg.task }} · {{ cfg.model }}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0;font-size:21px}
header p{margin:4px 0 0;color:#b9c2d3}main{max-width:1200px;margin:0 auto;padding:8px 32px 48px}
h2{margin-top:32px;border-bottom:2px solid #dde2ea;padding-bottom:4px}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid #e6e9ef;vertical-align:top}
th{background:#eef1f6;font-weight:600}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{color:#6b7588}.warn{background:#fff6e0;border-left:4px solid #e0a500;padding:8px 14px;margin:6px 0}
img{max-width:100%;background:#fff;border:1px solid #e6e9ef;margin:8px 0}
details{background:#fff;border:1px solid #dde2ea;border-radius:6px;margin:6px 0;padding:6px 12px}
summary{cursor:pointer;font-weight:600}.ok{color:#1a7f37}.bad{color:#b42318}
.steps{margin:4px 0 8px 0;padding-left:22px}.steps li{white-space:pre-wrap}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px}
.col{background:#f9fafb;border:1px solid #e6e9ef;border-radius:4px;padding:6px 10px}
.col h4{margin:2px 0 6px}pre{white-space:pre-wrap;background:#f9fafb;padding:8px;border:1px solid #e6e9ef}
.tag{display:inline-block;font-size:12px;padding:0 6px;border-radius:8px;background:#eef1f6;margin-left:4px}
</style></head><body>
<header><h1>cotscope audit: is the chain of thought how the answer is reached?</h1>
<p>{{ cfg.system }} vs {{ cfg.baseline or "no baseline" }} · task {{ cfg.task }} · model {{ cfg.model }} · n={{ s.n_samples }} · seed {{ cfg.seed }}</p></header>
<main>
<h2>Headline numbers</h2>
<p>Every value is a mean over samples with its 95% percentile-bootstrap confidence interval and its sample size n.</p>
<table id="headline"><thead><tr><th>experiment</th><th>metric</th><th>value</th><th>95% CI</th><th>n</th></tr></thead><tbody>
{% for r in s.table %}<tr data-metric="{{ r.experiment }} / {{ r.metric }}"><td>{{ r.experiment }}</td><td>{{ r.metric }}</td>
<td class="num value">{{ fmt(r.estimate.value, r.percent) }}</td><td class="num ci">{{ ci(r.estimate, r.percent) }}</td><td class="num n">{{ r.estimate.n }}</td></tr>
{% endfor %}</tbody></table>
{% for w in s.warnings %}<div class="warn">{{ w }}</div>{% endfor %}
{% for name, data in plots %}<h2>{{ titles[name] }}</h2><img alt="{{ name }} plot" src="data:image/png;base64,{{ data }}">{% endfor %}
<h2>Samples</h2>
<p>Click a sample to see its chain of thought step by step and what each intervention did to it.</p>
{% for r in records %}{% set t = r.traces["subject"] %}
<details class="sample" id="sample-{{ loop.index0 }}"><summary>#{{ loop.index }} · {{ r.sample.question | truncate(110) }}
<span class="tag {{ 'ok' if r.correct.get('subject') else 'bad' }}">{{ cfg.system }}: {{ t.answer if t.answer is not none else "no answer" }}</span>
{% if "baseline" in r.traces %}<span class="tag {{ 'ok' if r.correct.get('baseline') else 'bad' }}">{{ cfg.baseline }}: {{ r.traces["baseline"].answer if r.traces["baseline"].answer is not none else "no answer" }}</span>{% endif %}
<span class="tag">gold {{ r.sample.answer }}</span></summary>
<h4>Question</h4><pre class="question">{{ r.sample.question }}{% if r.sample.choices %}
{% for c in r.sample.choices %}({{ "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[loop.index0] }}) {{ c }}
{% endfor %}{% endif %}</pre>
<h4>Chain of thought ({{ t.steps | length }} steps, {{ t.n_generated_tokens }} tokens generated)</h4>
<ol class="steps cot">{% for st in t.steps %}<li>{{ st.text }}</li>{% endfor %}</ol>
<p>Final: <code>{{ t.final_text }}</code>{% if t.answer_error %} <span class="bad">({{ t.answer_error }})</span>{% endif %}</p>
{% set sources = sources_of(r) %}{% if sources %}
<h4>Early answering</h4><table><tr><th>source</th><th>k / n</th><th>CoT given (last step)</th><th>forced answer</th><th>continued answer</th><th>further tokens</th></tr>
{% for p in r.truncation %}<tr><td>{{ p.source }}</td><td class="num">{{ p.k }} / {{ p.n }}</td><td>{{ last_step(p, t) }}</td>
<td class="{{ 'ok' if p.forced_agrees else 'bad' }}">{{ p.forced.answer }}</td>
<td>{% if p.continued %}<span class="{{ 'ok' if p.continued_agrees else 'bad' }}">{{ p.continued.answer.answer }}</span>{% endif %}</td>
<td class="num">{{ p.continued.n_tokens if p.continued else "" }}</td></tr>{% endfor %}</table>
<div class="cols"><div class="col"><h4>original</h4><ol class="steps">{% for st in t.steps %}<li>{{ st.text }}</li>{% endfor %}</ol><p>answer {{ t.answer }}</p></div>
{% for src, p in sources %}<div class="col"><h4>{{ src }}</h4><ol class="steps">{% for st in p.steps or [] %}<li>{{ st.text }}</li>{% endfor %}</ol><p>answer {{ p.forced.answer }}</p></div>{% endfor %}
{% for sub in r.substitution or [] %}<div class="col"><h4>{{ sub.source }}</h4><ol class="steps">{% for st in sub.steps %}<li>{{ st.text | truncate(200) }}</li>{% endfor %}</ol><p>answer {{ sub.forced.answer }}</p></div>{% endfor %}
</div>{% endif %}
{% if r.mistakes %}<h4>Adding mistakes</h4><table><tr><th>step</th><th>original</th><th>corrupted</th><th>answer after continuing</th></tr>
{% for m in r.mistakes %}<tr><td class="num">{{ m.position + 1 }}</td><td>{{ m.original_step }}</td><td>{{ m.corrupted_step }}</td>
<td class="{{ 'bad' if m.changed else 'ok' }}">{{ m.continued.answer.answer }}{{ " (changed)" if m.changed else "" }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.hints %}<h4>Hints</h4><table><tr><th>hint</th><th>toward</th><th>answer</th><th>CoT with the hint</th><th>verbalized</th></tr>
{% for h in r.hints %}<tr><td>{{ h.kind }}</td><td>{{ h.hinted_answer }}</td><td class="{{ 'bad' if h.switched else '' }}">{{ h.trace.answer }}{{ " (switched)" if h.switched else "" }}</td>
<td><ol class="steps">{% for st in h.trace.steps %}<li>{{ st.text }}</li>{% endfor %}</ol></td>
<td>rule: {{ "yes" if h.verbalized_rule else "no" }}{% if h.verbalized_judge is not none %}<br>judge: {{ "yes" if h.verbalized_judge else "no" }}{% endif %}</td></tr>{% endfor %}</table>{% endif %}
</details>{% endfor %}
<h2>Configuration</h2><pre id="config">{{ config_json }}</pre>
</main></body></html>
"""

TITLES = {
    "truncation": "Early answering: truncated, summarized and paraphrased CoT",
    "substitution": "Substitution: the CoT replaced",
    "paraphrase": "Paraphrase sensitivity",
    "mistakes": "Adding mistakes",
    "hints": "Hints",
    "accuracy": "Accuracy",
}


def write_report(run_dir: str | Path, summary: Summary | None = None, records: list[SampleRecord] | None = None) -> Path:
    """Write ``report.html`` into a run directory and return its path.

    Raises:
        CotscopeError: when the directory holds no cotscope run.
    """
    import jinja2

    run_dir = Path(run_dir)
    if summary is None or records is None:
        summary, records = load_run(run_dir)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    plots = [(n, base64.b64encode((run_dir / f"{n}.png").read_bytes()).decode()) for n in PLOTS if (run_dir / f"{n}.png").exists()]
    html = env.from_string(TEMPLATE).render(
        cfg=summary.config,
        s=summary,
        records=records,
        plots=plots,
        titles=TITLES,
        fmt=_fmt,
        ci=_ci,
        sources_of=_sources_of,
        last_step=_last_step,
        config_json=json.dumps(summary.config.model_dump(mode="json"), indent=2),
    )
    path = run_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def load_run(run_dir: Path) -> tuple[Summary, list[SampleRecord]]:
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise CotscopeError(f"{run_dir} is not a cotscope run directory (no config.json)")
    try:
        config = AuditConfig.model_validate(json.loads(cfg_path.read_text())["config"])
    except (ValueError, KeyError) as exc:
        raise CotscopeError(f"{cfg_path} is not a cotscope run config: {exc}") from exc
    records = list(RunStore(run_dir, config).records.values())
    if not records:
        raise CotscopeError(f"{run_dir} has no finished samples yet")
    summary = summarize(records, config)
    if not any((run_dir / f"{n}.png").exists() for n in PLOTS):
        from .plots import plot_run

        plot_run(summary, run_dir)
    return summary, records


def _fmt(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.1f}%" if percent else f"{value:.3f}"


def _ci(e, percent: bool) -> str:
    if e.value is None:
        return ""
    return f"[{_fmt(e.lo, percent)}, {_fmt(e.hi, percent)}]"


def _sources_of(rec: SampleRecord) -> list:
    """The whole-CoT (k = n) point of each rewritten source."""
    return [(p.source, p) for p in rec.truncation or [] if p.source != "original" and p.k == p.n and p.n > 0]


def _last_step(point, trace) -> str:
    steps = point.steps if point.steps is not None else trace.steps[: point.k]
    return steps[-1].text if steps else "(nothing)"


COMPARE_TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cotscope compare</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0;font-size:21px}
main{max-width:1300px;margin:0 auto;padding:8px 32px 48px}h2{border-bottom:2px solid #dde2ea}
table{border-collapse:collapse;background:#fff;width:100%}th,td{text-align:left;padding:5px 10px;border-bottom:1px solid #e6e9ef}
th{background:#eef1f6}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}.ci{color:#6b7588;font-size:13px}
img{max-width:100%;background:#fff;border:1px solid #e6e9ef}.tax{background:#eef6ff;border-left:4px solid #4C72B0;padding:8px 14px}
</style></head><body>
<header><h1>Systems side by side · n={{ c.n_samples }} · differences paired against {{ c.reference }}</h1></header><main>
{% if c.safety_tax %}<p class="tax" id="safety-tax"><b>Safety tax</b> (shoggoth-face vs cot): accuracy
{{ pct(c.safety_tax.accuracy) }}; tokens {{ num(c.safety_tax.tokens) }}, ×{{ "%.2f" | format(c.safety_tax.token_ratio.value) }}</p>{% endif %}
<table id="comparison"><thead><tr><th>metric</th>{% for col in c.columns %}<th>{{ col.system }}</th>{% endfor %}</tr></thead><tbody>
{% for metric, (label, is_pct) in metrics.items() %}{% if c.columns | selectattr("values", "contains", metric) | list %}
<tr><td>{{ label }}</td>{% for col in c.columns %}<td class="num">{% if metric in col.values %}{{ pct(col.values[metric]) if is_pct else num(col.values[metric]) }}
{% if metric in col.differences %}<br><span class="ci">Δ {{ pct(col.differences[metric]) if is_pct else num(col.differences[metric]) }}</span>{% endif %}{% else %}n/a{% endif %}</td>{% endfor %}</tr>
{% endif %}{% endfor %}
<tr><td>tokens by role</td>{% for col in c.columns %}<td class="num">{% for role, e in col.tokens_by_role.items() %}{{ role }} {{ "%.0f" | format(e.value) }}<br>{% endfor %}</td>{% endfor %}</tr>
<tr><td>report</td>{% for col in c.columns %}<td><a href="{{ links[loop.index0] }}">{{ col.system }}</a></td>{% endfor %}</tr>
</tbody></table>
<h2>Plots</h2><img alt="comparison plot" src="data:image/png;base64,{{ plot }}">
</main></body></html>
"""


def write_comparison_report(comparison, out_dir: str | Path) -> Path:
    """Write ``compare.html`` beside ``compare.json``: one table, the plot, links to each run's report."""
    import jinja2

    from ..compare import METRICS

    out_dir = Path(out_dir)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.tests["contains"] = lambda values, key: key in values
    est = lambda e, p: f"{_fmt(e.value, p)} {_ci(e, p)} n={e.n}"  # noqa: E731
    links = [Path(col.run_dir).resolve().relative_to(out_dir.resolve()).as_posix() + "/report.html" for col in comparison.columns]
    html = env.from_string(COMPARE_TEMPLATE).render(
        c=comparison, metrics=METRICS, links=links,
        pct=lambda e: est(e, True), num=lambda e: est(e, False),
        plot=base64.b64encode((out_dir / "compare.png").read_bytes()).decode(),
    )
    path = out_dir / "compare.html"
    path.write_text(html, encoding="utf-8")
    return path
