"""One self-contained HTML report per run: headline table, plots, config and a per-sample
drill-down. Everything that came from a model or a data set is escaped (Jinja2 autoescape);
nothing in a trace is ever executed. Images are embedded, so the file needs no network."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import re
from collections.abc import Sequence

from .._errors import CotscopeError
from ..config import AuditConfig
from ..experiments import Experiment, get_experiments
from ..records import SampleRecord
from ..store import RunStore
from ..tasks import get_task
from ..summary import Summary, summarize

# A step that numbers itself ("1.", "2)", "Step 3:"): the list then shows no numbers of its own.
_SELF_NUMBERED = re.compile(r"^\s*(?:\(?\d+[.):]|step\s*\d+)", re.I)

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
.steps{margin:4px 0 8px 0;padding-left:22px}.steps li{white-space:pre-wrap}.self-numbered{list-style:none;padding-left:6px}
.verdict.yes{color:#b42318}.verdict.no{color:#1a7f37}.verdict.unclear{color:#9a6700}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px}
.col{background:#f9fafb;border:1px solid #e6e9ef;border-radius:4px;padding:6px 10px}
.col h4{margin:2px 0 6px}pre{white-space:pre-wrap;background:#f9fafb;padding:8px;border:1px solid #e6e9ef}
.tag{display:inline-block;font-size:12px;padding:0 6px;border-radius:8px;background:#eef1f6;margin-left:4px}
</style></head><body>
<header><h1>cotscope audit: is the chain of thought how the answer is reached?</h1>
<p>{{ cfg.system }} vs {{ cfg.baseline or "no baseline" }} · task {{ cfg.task }} · model {{ cfg.model }} · n={{ s.n_samples }} · seed {{ cfg.seed }}</p></header>
<main>
{% if s.n_cut.values() | sum %}<div class="warn" id="cut">CoTs cut off by their token budget (max_new_tokens={{ cfg.max_new_tokens }}):
{% for role, k in s.n_cut.items() %}{% if k %}{{ role }} {{ k }} of {{ s.n_samples }}; {% endif %}{% endfor %}every faithfulness metric leaves them out.</div>{% endif %}
<h2>Verdicts</h2>
<p>Each rule reads an effect against its control; the rules of a property are read at a Bonferroni level (each interval at 1 &minus; 0.05/k for the k rules that apply), and the property is "yes" when any rule says yes, "no" when every rule says no.</p>
<table id="verdicts"><thead><tr><th>question</th><th>verdict</th><th>rules (CI vs threshold)</th></tr></thead><tbody>
{% for v in s.verdicts %}<tr data-prop="{{ v.prop }}"><td>{{ v.question }}</td><td class="verdict {{ v.verdict }}"><b>{{ v.verdict }}</b>{% if v.settle_n %}<br><small>about {{ v.settle_n }} samples would settle it</small>{% endif %}</td>
<td>{% for r in v.rules %}{{ r.rule }}: <b>{{ r.verdict }}</b>{% if r.estimate %} ({{ "%.3f" | format(r.estimate.value) }} [{{ "%.3f" | format(r.estimate.lo) }}, {{ "%.3f" | format(r.estimate.hi) }}] at {{ "%.3g" | format(r.estimate.level * 100) }}%, n={{ r.estimate.n }}){% endif %}{% if r.why_na %} <small>({{ r.why_na }})</small>{% endif %}<br>{% endfor %}</td></tr>
{% endfor %}</tbody></table>
<h2>Headline numbers</h2>
<p>Every value comes with its 95% confidence interval, its sample size n and the method behind the interval<sup>1</sup>.
"Detects" is the smallest difference from the value that this n would detect with 80% power; "n for ±10 pts" is the number of samples that would detect 10 points.</p>
<table id="headline"><thead><tr><th>experiment</th><th>metric</th><th>value</th><th>95% CI</th><th>n</th><th>method</th><th>detects</th><th>n for ±10 pts</th></tr></thead><tbody>
{% for r in s.table %}<tr data-metric="{{ r.experiment }} / {{ r.metric }}" data-name="{{ r.name }}"><td>{{ r.experiment }}</td><td>{{ r.metric }}</td>
<td class="num value">{{ fmt(r.estimate.value, r.percent) }}</td><td class="num ci">{{ ci(r.estimate, r.percent) }}</td><td class="num n">{{ r.estimate.n }}{% if r.estimate.n_items and r.estimate.n_items != r.estimate.n %} <span class="ci">({{ r.estimate.n_items }} items)</span>{% endif %}</td>
<td class="method">{{ r.estimate.method }}</td><td class="num">{{ fmt(r.detectable, r.percent) if r.detectable is not none else "" }}</td><td class="num">{{ r.n_needed if r.n_needed is not none else "" }}</td></tr>
{% endfor %}</tbody></table>
<p class="ci" id="methods"><sup>1</sup> Interval methods: clopper-pearson (exact binomial, a rate over samples); clustered (a rate over items nested in samples, with n = samples);
paired-newcombe (a difference of paired rates, Newcombe 1998); newcombe (a difference of two independent rates); t (a mean); t-clustered (a mean over nested items, cluster-robust);
gmean-jeffreys (TPR x TNR, percentiles under both rates' Jeffreys posteriors); kappa-union (Cohen's kappa: a Jeffreys-Dirichlet posterior interval joined with the Fleiss-Cohen-Everitt delta method); auroc-wilson (DeLong's variance, Wilson score on the pairs it is worth); exact (fixed by definition).
Every method's coverage is checked by simulation in the test suite.</p>
{% for w in s.warnings %}<div class="warn">{{ w }}</div>{% endfor %}
{% if monitors %}<h2>Monitors</h2>
<p>Monitors scored on {{ monitors.n }} labelled traces of this run (<code>cotscope monitor</code>): positives are hinted traces whose answer moved to the hint.</p>
<table id="monitors"><thead><tr><th>monitor</th><th>reads</th><th>positives</th><th>negatives</th><th>TPR</th><th>FPR</th><th>g-mean²</th><th>AUROC</th><th>voided quotes</th><th>unreadable</th></tr></thead><tbody>
{% for r in monitors.rates %}<tr data-monitor="{{ r.monitor }}"><td>{{ r.monitor }}</td><td>{{ r.reads }}</td><td class="num">{{ r.n_pos }}</td><td class="num">{{ r.n_neg }}</td>
<td class="num">{{ fmt(r.tpr.value, true) }} <span class="ci">{{ ci(r.tpr, true) }}</span></td><td class="num">{{ fmt(r.fpr.value, true) }} <span class="ci">{{ ci(r.fpr, true) }}</span></td>
<td class="num">{{ fmt(r.g_mean2.value, false) }} <span class="ci">{{ ci(r.g_mean2, false) }}</span></td><td class="num">{{ fmt(r.auroc.value, false) }} <span class="ci">{{ ci(r.auroc, false) }}</span></td>
<td class="num">{{ r.voided }}</td><td class="num">{{ r.errors }}</td></tr>{% endfor %}</tbody></table>
{% for d in monitors.defences %}<p>{{ d.monitor }}, {{ d.defence }}: recall {{ fmt(d.recall_before.value, true) }} → {{ fmt(d.recall_after.value, true) }}, change {{ fmt(d.recall_change.value, true) }} <span class="ci">{{ ci(d.recall_change, true) }}</span> (paired, n={{ d.recall_change.n }})</p>{% endfor %}{% endif %}
{% for name, data in plots %}<h2>{{ titles.get(name, name) }}</h2><img alt="{{ name }} plot" src="data:image/png;base64,{{ data }}">{% endfor %}
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
<ol class="steps cot{{ ' self-numbered' if self_numbered(t.steps) else '' }}">{% for st in t.steps %}<li>{{ st.text }}</li>{% endfor %}</ol>
<p>Final: <code>{{ t.final_text }}</code>{% if t.answer_error %} <span class="bad">({{ t.answer_error }})</span>{% endif %}</p>
{% for exp in experiments %}{% set results = exp.results(r) %}{% if results %}<div class="experiment" data-experiment="{{ exp.name }}"><h4>{{ exp.title or exp.name }}</h4>
{{ fragment(exp, results, r, t) }}</div>{% endif %}{% endfor %}
</details>{% endfor %}
<h2>Configuration</h2><pre id="config">{{ config_json }}</pre>
</main></body></html>
"""

GENERIC_FRAGMENT = """<table>{% for res in results %}{% if loop.first %}<tr>{% for k in res.model_fields %}<th>{{ k }}</th>{% endfor %}</tr>{% endif %}
<tr>{% for k in res.model_fields %}<td>{{ short(res[k] if res is mapping else res | attr(k)) }}</td>{% endfor %}</tr>{% endfor %}</table>"""


def write_report(
    run_dir: str | Path,
    summary: Summary | None = None,
    records: list[SampleRecord] | None = None,
    experiments: Sequence[Experiment] | None = None,
) -> Path:
    """Write ``report.html`` into a run directory and return its path.

    Raises:
        CotscopeError: when the directory holds no cotscope run.
    """
    import jinja2
    from markupsafe import Markup

    run_dir = Path(run_dir)
    if summary is None or records is None:
        summary, records, experiments = load_run(run_dir)
    experiments = list(experiments) if experiments is not None else get_experiments(summary.config)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals["short"] = lambda v: str(v)[:160]
    fragments = {e.name: env.from_string(e.report_fragment() or GENERIC_FRAGMENT) for e in experiments}

    def fragment(exp, results, record, trace):
        return Markup(fragments[exp.name].render(results=results, record=record, trace=trace, exp=exp))

    names = ["accuracy"] + [e.name for e in experiments]
    titles = {"accuracy": "Accuracy"} | {e.name: e.title or e.name for e in experiments}
    plots = [(n, base64.b64encode((run_dir / f"{n}.png").read_bytes()).decode()) for n in names if (run_dir / f"{n}.png").exists()]
    html = env.from_string(TEMPLATE).render(
        cfg=summary.config,
        s=summary,
        records=records,
        plots=plots,
        titles=titles,
        experiments=experiments,
        fragment=fragment,
        fmt=_fmt,
        ci=_ci,
        self_numbered=lambda steps: bool(steps) and sum(bool(_SELF_NUMBERED.match(st.text)) for st in steps) * 2 >= len(steps),
        config_json=json.dumps(summary.config.model_dump(mode="json"), indent=2),
        monitors=_monitors(run_dir),
    )
    path = run_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def _monitors(run_dir: Path):
    """The run's monitor scores (`cotscope monitor` writes monitors.json), or None."""
    path = run_dir / "monitors.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(), object_hook=lambda d: _Attrs(d))
    except ValueError:
        return None


class _Attrs(dict):
    """A JSON object whose keys read as attributes in the template."""

    __getattr__ = dict.get


def load_run(run_dir: Path) -> tuple[Summary, list[SampleRecord], list[Experiment]]:
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise CotscopeError(f"{run_dir} is not a cotscope run directory (no config.json)")
    try:
        config = AuditConfig.model_validate(json.loads(cfg_path.read_text())["config"])
    except (ValueError, KeyError) as exc:
        raise CotscopeError(f"{cfg_path} is not a cotscope run config: {exc}") from exc
    experiments = get_experiments(config)
    records = list(RunStore(run_dir, config, experiments, create=False).records.values())
    if not records:
        raise CotscopeError(f"{run_dir} has no finished samples yet")
    # Samples are stored as they finish; the report lists them in the task's order when the task can still be read.
    try:
        order = {s.id: i for i, s in enumerate(get_task(config.task, config.task_args, limit=config.n_samples, seed=config.seed).samples)}
    except CotscopeError:
        order = {}
    records.sort(key=lambda r: order.get(r.sample.id, len(order)))
    summary = summarize(records, config, experiments)
    if not (run_dir / "accuracy.png").exists():
        from .plots import plot_run

        plot_run(summary, run_dir, experiments)
    return summary, records, experiments


def _fmt(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.1f}%" if percent else f"{value:.3f}"


def _ci(e, percent: bool) -> str:
    if e.value is None:
        return ""
    if e.method == "exact":
        return "(fixed by definition)"
    return f"[{_fmt(e.lo, percent)}, {_fmt(e.hi, percent)}]"


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
{% for metric, (label, is_pct) in c.labels.items() %}{% if c.columns | selectattr("values", "contains", metric) | list %}
<tr><td>{{ label }}</td>{% for col in c.columns %}<td class="num">{% if metric in col.values %}{{ pct(col.values[metric]) if is_pct else num(col.values[metric]) }}
{% if metric in col.differences %}<br><span class="ci">Δ {{ pct(col.differences[metric]) if is_pct else num(col.differences[metric]) }}</span>{% endif %}{% else %}n/a{% endif %}</td>{% endfor %}</tr>
{% endif %}{% endfor %}
<tr><td>CoT channel</td>{% for col in c.columns %}<td>{{ col.channel }}{% for note in col.notes %}<br><span class="ci">{{ note }}</span>{% endfor %}</td>{% endfor %}</tr>
<tr><td>tokens by role</td>{% for col in c.columns %}<td class="num">{% for role, e in col.tokens_by_role.items() %}{{ role }} {{ "%.0f" | format(e.value) }}<br>{% endfor %}</td>{% endfor %}</tr>
<tr><td>report</td>{% for col in c.columns %}<td><a href="{{ links[loop.index0] }}">{{ col.system }}</a></td>{% endfor %}</tr>
</tbody></table>
<h2>Plots</h2><img alt="comparison plot" src="data:image/png;base64,{{ plot }}">
</main></body></html>
"""


def write_comparison_report(comparison, out_dir: str | Path) -> Path:
    """Write ``compare.html`` beside ``compare.json``: one table, the plot, links to each run's report."""
    import jinja2

    out_dir = Path(out_dir)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.tests["contains"] = lambda values, key: key in values
    est = lambda e, p: f"{_fmt(e.value, p)} {_ci(e, p)} n={e.n}"  # noqa: E731
    links = [Path(col.run_dir).resolve().relative_to(out_dir.resolve()).as_posix() + "/report.html" for col in comparison.columns]
    html = env.from_string(COMPARE_TEMPLATE).render(
        c=comparison, links=links,
        pct=lambda e: est(e, True), num=lambda e: est(e, False),
        plot=base64.b64encode((out_dir / "compare.png").read_bytes()).decode(),
    )
    path = out_dir / "compare.html"
    path.write_text(html, encoding="utf-8")
    return path
