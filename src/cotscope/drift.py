"""How far has a model moved? Two runs on the same samples (a base model and its tuned
version, or two checkpoints of one training run), compared metric by metric with paired
intervals, the KL divergence between the two models on the CoTs, and the samples whose CoT
moved most, side by side.

KL(A || B) is estimated on run A's own CoTs: per sample, log p_A(CoT) - log p_B(CoT) over the
CoT given its prompt, pooled over A's CoT tokens (a token-weighted mean, resampled by sample).
It is the KL of the two models' CoT distributions when A's CoTs are samples of A (greedy CoTs
are A's modes, so it is then a proxy). The other direction uses B's CoTs when both models load.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from . import stats
from ._errors import CotscopeError
from .backends import Backend, get_backend
from .experiments import Experiment
from .metrics import Metric
from .metrics.base import paired as paired_values
from .records import SampleRecord
from .stats import Estimate
from .report.table import fmt_interval as _fmt, fmt_ratio
from .summary import Summary, run_metrics
from .systems import get_system
from .tasks import get_task


class MetricDrift(BaseModel):
    name: str
    label: str
    group: str
    percent: bool
    a: Estimate = Field(description="The metric in run A.")
    b: Estimate = Field(description="The metric in run B.")
    difference: Estimate = Field(description="B minus A, paired over the samples both measured; for a cost, B over A (method t-log).")


class SampleMove(BaseModel):
    sample_id: str
    question: str
    moved: float = Field(description="1 - the similarity of the two CoTs' text (difflib ratio).")
    cot_a: str
    cot_b: str
    answer_a: str | None
    answer_b: str | None


class Drift(BaseModel):
    """drift.json: run B against run A."""

    run_a: str
    run_b: str
    model_a: str
    model_b: str
    n_samples: int = Field(description="Samples both runs hold.")
    metrics: list[MetricDrift]
    kl_ab: Estimate | None = Field(default=None, description="KL(A || B) in nats per CoT token, on A's CoTs.")
    kl_ba: Estimate | None = Field(default=None, description="KL(B || A) in nats per CoT token, on B's CoTs.")
    moved: list[SampleMove] = Field(default_factory=list, description="The samples whose CoT moved most.")


def _load(run_dir: Path) -> tuple[Summary, list[SampleRecord], list[Experiment]]:
    from .report.html import load_run

    return load_run(Path(run_dir))


def drift(run_a: str | Path, run_b: str | Path, out_dir: str | Path | None = None, *, kl: bool = True, top: int = 5,
          backends: tuple[Backend, Backend] | None = None) -> Drift:
    """Compare run B with run A on their common samples.

    Args:
        run_a, run_b: Run directories written by `cotscope audit` on the same task and samples.
        out_dir: Where to write drift.json and drift.html (default: run B's directory).
        kl: Estimate the KL divergence between the two runs' models (loads both).
        top: How many of the most-moved samples to show.
        backends: The two models to score with, instead of building them from the runs' configs.

    Raises:
        CotscopeError: when the runs differ in task or samples, naming the mismatch.
    """
    sa, ra, ea = _load(Path(run_a))
    sb, rb, eb = _load(Path(run_b))
    ca, cb = sa.config, sb.config
    for field in ("task", "task_args", "seed"):
        if getattr(ca, field) != getattr(cb, field):
            raise CotscopeError(f"the runs differ in {field}: {getattr(ca, field)!r} (A) vs {getattr(cb, field)!r} (B); drift compares runs on the same samples")
    by_a, by_b = {r.sample.id: r for r in ra}, {r.sample.id: r for r in rb}
    common = [i for i in by_a if i in by_b]
    if not common:
        raise CotscopeError(f"runs {run_a} and {run_b} share no sample")
    only = sorted(set(by_a) ^ set(by_b))
    if only:
        raise CotscopeError(f"the runs hold different samples ({len(only)} in one only, e.g. {only[0]!r}); drift compares runs on the same samples")
    metrics_b = {m.name: m for m in run_metrics(eb, cb)}
    rows = []
    for m in run_metrics(ea, ca):
        if m.name not in metrics_b or m.name not in sa.metrics or m.name not in sb.metrics or m.name.startswith("cost/wall"):
            continue
        d = paired(m, [by_b[i] for i in common], [by_a[i] for i in common])
        if d is not None:
            rows.append(MetricDrift(name=m.name, label=m.label.format(system="system", baseline="baseline"), group=m.group,
                                    percent=m.percent, a=sa.metrics[m.name], b=sb.metrics[m.name], difference=d))
    order = list(dict.fromkeys(r.group for r in rows))
    rows.sort(key=lambda r: order.index(r.group))  # each group once, in the order it first appears
    result = Drift(run_a=str(run_a), run_b=str(run_b), model_a=ca.model, model_b=cb.model, n_samples=len(common), metrics=rows)
    if kl:
        ma, mb = backends or (get_backend(ca.model), get_backend(cb.model))
        result.kl_ab = kl_on(ca, [by_a[i] for i in common], ma, mb)
        result.kl_ba = kl_on(cb, [by_b[i] for i in common], mb, ma)
    result.moved = most_moved([by_a[i] for i in common], [by_b[i] for i in common], top)
    out = Path(out_dir) if out_dir is not None else Path(run_b)
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.json").write_text(result.model_dump_json(indent=2))
    write_drift_html(result, out / "drift.html")
    return result


def paired(metric: Metric, b: Sequence[SampleRecord], a: Sequence[SampleRecord]) -> Estimate | None:
    """B against A on one metric, over the samples both measured: B minus A, or B over A for a
    cost (`cotscope.metrics.base.paired`)."""
    pairs = [(x, y) for rb, ra in zip(b, a, strict=True) if (x := metric.per_sample(rb)) is not None and (y := metric.per_sample(ra)) is not None]
    return paired_values(metric, pairs)


def kl_on(config, records: Sequence[SampleRecord], p: Backend, q: Backend) -> Estimate | None:
    """Token-weighted mean of log p(CoT) - log q(CoT) over the CoTs of `records`."""
    task = get_task(config.task, config.task_args, limit=config.n_samples, seed=config.seed)
    system = get_system(config.system, p, task.kind)
    todo = [r for r in records if r.traces["subject"].cot_text]
    if not todo:
        return None
    prompts = [system.prompt(r.sample) for r in todo]
    cots = [[r.traces["subject"].cot_text] for r in todo]
    lp, lq = p.score(prompts, cots), q.score(prompts, cots)
    clusters = []
    for r, (a,), (b,) in zip(todo, lp, lq, strict=True):
        n = max(p.count_tokens(r.traces["subject"].cot_text), 1)
        clusters.append([(a - b) / n] * n)  # the sample's tokens, each at its mean: a ratio estimator
    return stats.clustered_mean(clusters)


def most_moved(a: Sequence[SampleRecord], b: Sequence[SampleRecord], top: int) -> list[SampleMove]:
    moves = []
    for ra, rb in zip(a, b, strict=True):
        ta, tb = ra.traces["subject"], rb.traces["subject"]
        moved = 1 - difflib.SequenceMatcher(None, ta.cot_text, tb.cot_text, autojunk=False).ratio()
        moves.append(SampleMove(sample_id=ra.sample.id, question=ra.sample.question, moved=moved, cot_a=ta.cot_text,
                                cot_b=tb.cot_text, answer_a=ta.answer, answer_b=tb.answer))
    return sorted(moves, key=lambda m: -m.moved)[:top]


def render_drift(d: Drift) -> str:
    lines = [f"cotscope drift · A = {d.run_a} ({d.model_a}) · B = {d.run_b} ({d.model_b}) · n={d.n_samples}", ""]
    width = max((len(r.label) for r in d.metrics), default=10)
    group = None
    for r in d.metrics:
        if r.group != group:
            group = r.group
            lines.append(f"  {group}")
        lines.append(f"    {r.label.ljust(width)}  A {_fmt(r.a, r.percent)}   B {_fmt(r.b, r.percent)}   " + (f"B/A {fmt_ratio(r.difference)}" if r.difference.method == "t-log" else f"B-A {_fmt(r.difference, r.percent, True)}"))
    for name, e in (("KL(A || B), on A's CoTs", d.kl_ab), ("KL(B || A), on B's CoTs", d.kl_ba)):
        if e is not None:
            lines.append(f"  {name}: {e.value:.4f} [{e.lo:.4f}, {e.hi:.4f}] nats/token, n={e.n} samples ({e.n_items} tokens)")
    if d.moved:
        lines += ["", "  CoTs that moved most (1 - text similarity):"]
        for m in d.moved:
            lines.append(f"    {m.sample_id}: {m.moved:.2f}  answer {m.answer_a} -> {m.answer_b}")
    return "\n".join(lines)


DRIFT_TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cotscope drift</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}header{background:#1d2330;color:#fff;padding:18px 32px}
main{max-width:1200px;margin:0 auto;padding:8px 32px 48px}table{border-collapse:collapse;background:#fff;width:100%}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid #e6e9ef;vertical-align:top}th{background:#eef1f6}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}.cols{display:grid;grid-template-columns:1fr 1fr;gap:10px}
pre{white-space:pre-wrap;background:#fff;border:1px solid #e6e9ef;padding:8px}
</style></head><body><header><h1>Drift: B against A · n={{ d.n_samples }}</h1>
<p>A = {{ d.run_a }} ({{ d.model_a }}) · B = {{ d.run_b }} ({{ d.model_b }})</p></header><main>
<h2>KL divergence (nats per CoT token, 95% CI, resampled by sample)</h2><ul>
{% if d.kl_ab %}<li id="kl-ab">KL(A || B) on A's CoTs: {{ "%.4f" | format(d.kl_ab.value) }} [{{ "%.4f" | format(d.kl_ab.lo) }}, {{ "%.4f" | format(d.kl_ab.hi) }}], n={{ d.kl_ab.n }}</li>{% endif %}
{% if d.kl_ba %}<li id="kl-ba">KL(B || A) on B's CoTs: {{ "%.4f" | format(d.kl_ba.value) }} [{{ "%.4f" | format(d.kl_ba.lo) }}, {{ "%.4f" | format(d.kl_ba.hi) }}], n={{ d.kl_ba.n }}</li>{% endif %}</ul>
<h2>Metrics, paired over samples</h2>
<table id="drift"><tr><th>group</th><th>metric</th><th>A</th><th>B</th><th>B - A, or B / A for a cost (95% CI)</th><th>method</th></tr>
{% for r in d.metrics %}<tr data-name="{{ r.name }}"><td>{{ r.group }}</td><td>{{ r.label }}</td><td class="num">{{ fmt(r.a, r.percent) }}</td><td class="num">{{ fmt(r.b, r.percent) }}</td>
<td class="num">{% if r.difference.method == "t-log" %}{{ ratio(r.difference) }}{% else %}{{ fmt(r.difference, r.percent, True) }}{% endif %}</td><td>{{ r.difference.method }}</td></tr>{% endfor %}</table>
<h2>The CoTs that moved most</h2>
{% for m in d.moved %}<h3>{{ m.sample_id }} · moved {{ "%.2f" | format(m.moved) }} · answer {{ m.answer_a }} → {{ m.answer_b }}</h3><p>{{ m.question }}</p>
<div class="cols"><pre>{{ m.cot_a }}</pre><pre>{{ m.cot_b }}</pre></div>{% endfor %}
</main></body></html>
"""


def write_drift_html(d: Drift, path: Path) -> Path:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    path.write_text(env.from_string(DRIFT_TEMPLATE).render(d=d, fmt=_fmt, ratio=fmt_ratio), encoding="utf-8")
    return path
