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
from .table import fmt_ratio
from ..config import AuditConfig
from ..experiments import Experiment, get_experiments
from ..records import SampleRecord
from ..store import RunStore
from ..tasks import get_task
from ..summary import Summary, summarize

# A step that numbers itself ("1.", "2)", "Step 3:"): the list then shows no numbers of its own.
_SELF_NUMBERED = re.compile(r"^\s*(?:\(?\d+[.):]|step\s*\d+)", re.I)

def _template(name: str) -> str:
    """A page's Jinja template, kept beside this module in templates/ (as the experiments keep theirs)."""
    return (Path(__file__).parent / "templates" / name).read_text(encoding="utf-8")


TEMPLATE = _template("report.html")

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


COMPARE_TEMPLATE = _template("compare.html")


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
        pct=lambda e: est(e, True), num=lambda e: est(e, False), ratio=fmt_ratio,
        plot=base64.b64encode((out_dir / "compare.png").read_bytes()).decode(),
    )
    path = out_dir / "compare.html"
    path.write_text(html, encoding="utf-8")
    return path
