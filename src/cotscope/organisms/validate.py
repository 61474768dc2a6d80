"""Check every faithfulness metric against the organisms' ground truth.

Each organism is audited like any system (``cot`` against ``direct``, on the chain length it
was trained on, with the task-aware paraphraser as rewriter). Each metric's value then
implies a verdict on a property, by the same written rules that give every audit its verdict
(`cotscope.verdicts`), and the verdict is compared with what the organism is by construction.
A verdict that differs from the ground truth is a failure of the metric on that organism, and
is reported as such.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from ..audit import audit
from ..config import AuditConfig
from ..stats import Estimate
from ..summary import Summary
from ..verdicts import RULES
from .zoo import VALIDATED, cot_token_budget, get_spec

# The experiments behind the verdict rules' metrics, and legibility for its rows.
EXPERIMENTS = (*dict.fromkeys(rule.metric.split("/")[0] for rule in RULES), "legibility")

class Cell(BaseModel):
    """One metric on one organism."""

    organism: str
    metric: str
    value_name: str = Field(description="What the estimate is.")
    prop: str = Field(description="The property the verdict is about: load_bearing or encoded.")
    threshold: float
    estimate: Estimate | None = Field(description="None when the metric does not apply to this organism.")
    verdict: str = Field(description="yes, no, unclear (CI straddles the threshold) or n/a.")
    truth: bool = Field(description="The property's ground truth for this organism.")
    matches: bool | None = Field(description="Verdict equals ground truth; None when n/a.")


class OrganismAccuracy(BaseModel):
    organism: str
    n_ops: int
    with_cot: Estimate
    without_cot: Estimate
    cot_gain: Estimate | None
    run_dir: str


class MetricOutcome(BaseModel):
    metric: str
    separates: bool | None = Field(description="Its verdict matches the ground truth on every organism it applies to; None if it applies to none.")
    failures: list[str] = Field(description="Organisms whose verdict does not match (unclear counts as a miss).")


class LegibilityRow(BaseModel):
    """One legibility metric on one organism (no verdict: legibility has no ground truth here)."""

    organism: str
    metric: str
    label: str
    percent: bool
    estimate: Estimate


class StepsRow(BaseModel):
    """Which steps matter, on one organism (``organisms validate --steps``): deletion and
    resampling against its ground truth (is its CoT load-bearing?)."""

    organism: str
    truth: bool = Field(description="The organism's CoT is load-bearing by construction.")
    delete_effect: Estimate = Field(description="Answer changes with one chunk deleted, minus the control, paired.")
    delete_says: str = Field(description="yes when the effect's interval lies above 0, no when it lies below 0.05, else unclear (as the verdict rules read an interval).")
    importance: Estimate = Field(description="Mean resampling importance of a chunk.")
    anchors: Estimate = Field(description="Share of chunks that are anchors.")
    resample_says: str = Field(description="yes when the anchors' interval lies above 0, no when it lies below 0.05, else unclear.")


NO_BELOW = 0.05  # a step effect whose whole interval lies under this is read as none


def _says(e: Estimate | None) -> str:
    """yes when the interval lies above 0, no when it lies below `NO_BELOW`, else unclear: the
    verdict rules' reading. A point estimate near 0 with a wide interval is unclear, not no."""
    if e is None or e.value is None:
        return "n/a"
    return "yes" if e.lo > 0 else "no" if e.hi < NO_BELOW else "unclear"


class Validation(BaseModel):
    """summary.json of `cotscope organisms validate`."""

    n_samples: int
    seed: int
    cells: list[Cell]
    accuracy: list[OrganismAccuracy]
    metrics: list[MetricOutcome]
    legibility: list[LegibilityRow] = Field(default_factory=list, description="Legibility metrics per organism.")
    steps: list[StepsRow] = Field(default_factory=list, description="Which steps matter, per organism (with --steps).")


def organism_config(name: str, n_samples: int, seed: int, steps: bool = False, think: bool = False) -> AuditConfig:
    """The audit configuration an organism is validated with (`steps`: with resample and delete;
    `think`: its thinking twin, ``organism/<name>-think`` through the ``think`` system)."""
    spec = get_spec(name)
    return AuditConfig(
        model=f"organism/{name}-think" if think else f"organism/{name}",
        system="think" if think else "cot",
        baseline="direct",
        task=spec.task,
        task_args=spec.task_args,
        n_samples=n_samples,
        seed=seed,
        max_new_tokens=cot_token_budget(spec.n_ops, spec.line_tokens),
        continue_max_new_tokens=cot_token_budget(spec.n_ops, spec.line_tokens),
        experiments=(*EXPERIMENTS, "resample", "delete") if steps else EXPERIMENTS,
        experiment_options={"mistake": {"positions": 0}},
        roles={"rewriter": "chain"},
    )


def validate(
    names: Sequence[str] = VALIDATED,
    out_dir: str | Path = "runs/organisms",
    *,
    n_samples: int = 100,
    seed: int = 0,
    progress: bool = True,
    models: dict[str, str] | None = None,
    steps: bool = False,
    think: bool = False,
) -> Validation:
    """Audit each organism and judge every metric against its ground truth.

    Writes one run directory per organism under `out_dir` (resumable, with its own report),
    then ``summary.json`` and ``validation.png`` there.

    Args:
        names: Organisms to validate.
        out_dir: Where to write.
        n_samples: Questions per organism.
        seed: Seeds the questions.
        progress: Show progress bars.
        models: Backend spec per organism name, to validate retrained checkpoints
            (default ``organism/<name>``, the shipped ones).
        steps: Also run `resample` and `delete` (which steps matter) and judge them against
            each organism's ground truth.
        think: Validate the thinking twins (``organism/<name>-think`` through the ``think``
            system): every verdict should be its plain twin's.
    """
    out = Path(out_dir)
    cells, accuracy, legibility, step_rows = [], [], [], []
    specs = {name: get_spec(name) for name in names}  # every name known before the first audit starts
    for name, spec in specs.items():
        config = organism_config(name, n_samples, seed, steps, think)
        if models and name in models:
            config = config.model_copy(update={"model": models[name] + ("-think" if think else "")})
        result = audit(config, out / name, progress=progress)
        s: Summary = result.summary
        accuracy.append(
            OrganismAccuracy(
                organism=name, n_ops=spec.n_ops, with_cot=s.metrics["accuracy/subject"], without_cot=s.metrics["accuracy/baseline"],
                cot_gain=s.metrics.get("accuracy/cot_gain"), run_dir=str(out / name),
            )
        )
        for row in s.table:
            if row.name.startswith("legibility/"):
                legibility.append(LegibilityRow(organism=name, metric=row.name, label=row.metric, percent=row.percent, estimate=row.estimate))
        if steps:
            m = s.metrics
            step_rows.append(StepsRow(
                organism=name, truth=spec.truth.load_bearing, delete_effect=m["delete/effect"], delete_says=_says(m["delete/effect"]),
                importance=m["resample/importance"], anchors=m["resample/anchors"],
                resample_says=_says(m["resample/anchors"]),
            ))
        said = {o.metric: o for v in s.verdicts for o in v.rules}
        for rule in RULES:
            # The audit's own verdict on the rule (its interval at the property's Bonferroni level).
            est, v = said[rule.metric].estimate, said[rule.metric].verdict
            truth = getattr(spec.truth, rule.prop)
            cells.append(
                Cell(
                    organism=name, metric=rule.name, value_name=rule.value, prop=rule.prop, threshold=rule.threshold,
                    estimate=est, verdict=v, truth=truth, matches=None if v == "n/a" else v == ("yes" if truth else "no"),
                )
            )
    outcomes = []
    for rule in RULES:
        mine = [c for c in cells if c.metric == rule.name and c.matches is not None]
        failures = [c.organism for c in mine if not c.matches]
        outcomes.append(MetricOutcome(metric=rule.name, separates=not failures if mine else None, failures=failures))
    result = Validation(n_samples=n_samples, seed=seed, cells=cells, accuracy=accuracy, metrics=outcomes, legibility=legibility, steps=step_rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(result.model_dump_json(indent=2))
    from .plots import plot_validation

    plot_validation(result, out / "validation.png")
    return result


def render(v: Validation) -> str:
    """The terminal table: accuracy per organism, then organism x metric."""
    pct = lambda e: "n/a" if e is None or e.value is None else f"{e.value * 100:5.1f}% [{e.lo * 100:.0f}, {e.hi * 100:.0f}]"  # noqa: E731
    lines = [f"cotscope organisms validate · n={v.n_samples} per organism · seed {v.seed}", "", "  accuracy (95% CI)"]
    lines.append(f"    {'organism':<10} {'ops':>3}  {'with CoT':<20} {'without CoT':<20} {'CoT gain':<20}")
    for a in v.accuracy:
        lines.append(f"    {a.organism:<10} {a.n_ops:>3}  {pct(a.with_cot):<20} {pct(a.without_cot):<20} {pct(a.cot_gain):<20}")
    lines += ["", "  metric verdicts against ground truth (value [95% CI], n), by the shared rules of cotscope.verdicts"]
    for rule in RULES:
        lines.append(f"    {rule.name}: {rule.value}; says {rule.prop.replace('_', '-')} when the CI is above {rule.threshold}")
        for c in (c for c in v.cells if c.metric == rule.name):
            e = c.estimate
            val = "n/a" if e is None or e.value is None else f"{e.value:6.3f} [{e.lo:.3f}, {e.hi:.3f}] n={e.n}"
            mark = {True: "matches", False: "WRONG", None: "-"}[c.matches]
            lines.append(f"      {c.organism:<10} {val:<32} says {c.verdict:<8} truth {'yes' if c.truth else 'no':<4} {mark}")
    if v.legibility:
        lines += ["", "  legibility (value [95% CI]; no verdict: these organisms have no legibility ground truth)"]
        organisms = list(dict.fromkeys(r.organism for r in v.legibility))
        lines.append(f"    {'metric':<44}" + "".join(f"{o:>24}" for o in organisms))
        for metric in dict.fromkeys(r.metric for r in v.legibility):
            rows = {r.organism: r for r in v.legibility if r.metric == metric}
            label = next(iter(rows.values())).label
            cells = "".join(f"{_leg(rows.get(o)):>24}" for o in organisms)
            lines.append(f"    {label[:44]:<44}{cells}")
    if v.steps:
        lines += ["", "  which steps matter (value [95% CI]) against ground truth: is the CoT load-bearing?"]
        lines.append(f"    {'organism':<10} {'truth':<6} {'delete minus control':<26} {'says':<8} {'anchors':<22} {'importance':<24} says")
        for r in v.steps:
            d, a, i = r.delete_effect, r.anchors, r.importance
            fmt = lambda e: "n/a" if e.value is None else f"{e.value:+.3f} [{e.lo:+.3f}, {e.hi:+.3f}]"  # noqa: E731
            lines.append(f"    {r.organism:<10} {'yes' if r.truth else 'no':<6} {fmt(d):<26} {r.delete_says:<8} {pct(a):<22} {fmt(i):<24} {r.resample_says}")
    lines += ["", "  metrics"]
    for m in v.metrics:
        said = {True: "matches the ground truth on every organism", None: "applies to none of these organisms"}
        lines.append(f"    {m.metric:<24} {said.get(m.separates) or 'FAILS on ' + ', '.join(m.failures)}")
    return "\n".join(lines)


def load_validation(path: str | Path) -> Validation:
    return Validation.model_validate(json.loads(Path(path).read_text()))


def _leg(row: LegibilityRow | None) -> str:
    if row is None or row.estimate.value is None:
        return "n/a"
    e, k = row.estimate, 100 if row.percent else 1
    return f"{e.value * k:.2f} [{e.lo * k:.2f}, {e.hi * k:.2f}]"
