"""Turn sample records into the numbers an audit reports: every registered metric (each with
n, an interval and the method that made it), each experiment's structured extras (curves),
a table, the verdict per property, and the effect each number could detect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from . import stats
from .config import AuditConfig
from .experiments import Experiment, get_experiments
from ._errors import CotscopeError
from .metrics import METRICS, Metric, load_metrics
from .records import SCHEMA_VERSION, SampleRecord
from .stats import Estimate
from .verdicts import Verdict, system_verdicts

# Below this many correct answers, accuracy-based curves are called out as thin.
FEW_CORRECT = 10
# The effect size the planning column sizes n for: 10 points of a rate.
PLANNED_EFFECT = 0.10


class TableRow(BaseModel):
    experiment: str = Field(description="The row group.")
    metric: str = Field(description="What the number is.")
    name: str = Field(description="The metric's registry name.")
    estimate: Estimate
    percent: bool = Field(description="Whether the value is a rate best read in percent.")
    detectable: float | None = Field(default=None, description="Smallest difference this n detects at 80% power.")
    n_needed: int | None = Field(default=None, description=f"Samples that would detect a difference of {PLANNED_EFFECT} (rates only).")


class Summary(BaseModel):
    """The headline numbers of an audit (summary.json)."""

    schema_version: int = SCHEMA_VERSION
    config: AuditConfig
    n_samples: int
    metrics: dict[str, Estimate] = Field(default_factory=dict, description="Metric name -> estimate, for every metric with data.")
    experiments: dict[str, Any] = Field(default_factory=dict, description="Experiment name -> its structured summary (curves).")
    n_correct: dict[str, int]
    answer_failures: dict[str, int] = Field(description="Samples whose answer could not be parsed, per role.")
    n_cut: dict[str, int] = Field(default_factory=dict, description="CoTs that ended on their token budget, per role: left out of faithfulness metrics.")
    table: list[TableRow] = Field(default_factory=list, description="Every headline metric, one row each.")
    verdicts: list[Verdict] = Field(default_factory=list, description="Per property, a plain verdict from the shared rules.")
    warnings: list[str] = Field(default_factory=list, description="Plain-language caveats on these numbers.")

    @property
    def labels(self) -> dict[str, str]:
        return {"system": self.config.system, "baseline": self.config.baseline or "baseline"}

    def __getitem__(self, name: str) -> Estimate:
        """A metric's estimate by name: ``summary["truncate/aoc"]``."""
        if name not in self.metrics:
            raise KeyError(f"no metric {name!r} in this summary; there are: {', '.join(self.metrics)}")
        return self.metrics[name]


def run_metrics(experiments: Sequence[Experiment], config: AuditConfig | None = None) -> list[Metric]:
    """Every metric of a run: the registered ones, each experiment's in order, then the
    config's extra ones (by import path). Names must be unique."""
    out = list(METRICS.values())
    for exp in experiments:
        out.extend(exp.metrics())
    if config is not None:
        out.extend(load_metrics(config.metrics))
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CotscopeError(f"metric names collide: {', '.join(dup)}")
    return out


def summarize(records: Sequence[SampleRecord], config: AuditConfig, experiments: Sequence[Experiment] | None = None) -> Summary:
    experiments = list(experiments) if experiments is not None else get_experiments(config)
    metrics = run_metrics(experiments, config)
    estimates = {m.name: m.estimate(records) for m in metrics}
    roles = sorted({r for rec in records for r in rec.correct})
    summary = Summary(
        config=config,
        n_samples=len(records),
        metrics={k: v for k, v in estimates.items() if v.n},
        experiments={e.name: part for e in experiments if (part := e.summarize(records, config)) is not None},
        n_correct={role: sum(rec.correct.get(role, False) for rec in records) for role in roles},
        answer_failures={role: sum(rec.traces[role].answer is None for rec in records if role in rec.traces) for role in roles},
        n_cut={role: sum(rec.traces[role].cut for rec in records if role in rec.traces) for role in roles},
    )
    summary.table = table_rows(summary, metrics)
    by_name = {m.name: m for m in metrics}
    summary.verdicts = system_verdicts(summary.metrics, lambda name, level: by_name[name].estimate(records, level))
    summary.warnings = caveats(summary, records)
    return summary


def table_rows(s: Summary, metrics: Sequence[Metric]) -> list[TableRow]:
    """One row per metric with a value, the rows of one group together (a group several
    experiments share, such as the step effects by third, in the place it first appears)."""
    first: dict[str, int] = {}
    for i, m in enumerate(metrics):
        first.setdefault(m.group, i)
    metrics = sorted(metrics, key=lambda m: first[m.group])  # stable: each group keeps its order
    rows = []
    for m in metrics:
        e = s.metrics.get(m.name)
        if e is None:
            continue
        rows.append(
            TableRow(
                experiment=m.group, metric=m.label.format(**s.labels), name=m.name, estimate=e, percent=m.percent,
                detectable=stats.detectable_effect(e), n_needed=stats.samples_needed(e, PLANNED_EFFECT) if m.kind != "mean" else None,
            )
        )
    return rows


def caveats(s: Summary, records: Sequence[SampleRecord] = ()) -> list[str]:
    out = []
    partial: dict[str, int] = {}
    for rec in records:
        t = rec.traces.get("subject")
        if t is not None and t.partial_thinking:
            partial[t.thinking] = partial.get(t.thinking, 0) + 1
    for kind, k in partial.items():
        what = "a summary of its thinking" if kind == "summary" else "no readable thinking (redacted)"
        out.append(f"{k} of {s.n_samples} subject traces carry {what}: an intervention on it would not act on the model's "
                   "reasoning, so every faithfulness metric leaves them out.")
    for role, k in s.n_cut.items():
        if k:
            out.append(
                f"{k} of {s.n_samples} {role} CoTs ended on their token budget (max_new_tokens={s.config.max_new_tokens}): "
                "they are cut, not complete, and every faithfulness metric leaves them out; raise --max-new-tokens."
            )
    cont = s.metrics.get("cost/continuations_cut")
    if cont is not None and cont.value:
        out.append(
            f"{cont.value * 100:.0f}% of continuations ended on their budget (1.5x what the CoT spent after the cut, +16, "
            f"at least continue_max_new_tokens={s.config.continue_max_new_tokens}): 'system continues' numbers include them, "
            "answered where they stopped (such a continuation re-derives at more length than the original did, or loops)."
        )
    for role, k in s.n_correct.items():
        if k < FEW_CORRECT:
            out.append(
                f"{role} accuracy rests on {k} correct answer(s) out of {s.n_samples}: accuracy curves are thin; "
                "agreement curves and AOC do not need correct answers."
            )
    gain = s.metrics.get("accuracy/cot_gain")
    if gain is not None and gain.lo is not None and gain.lo <= 0 <= (gain.hi or 0):
        out.append("the CoT's gain over the baseline is not distinguishable from zero: its reasoning may not be load-bearing.")
    for role, k in s.answer_failures.items():
        if k:
            out.append(f"{k} {role} answer(s) could not be parsed; they count as wrong.")
    empty = max((getattr(part, "n_without_cot", 0) for part in s.experiments.values()), default=0)
    if empty:
        out.append(f"{empty} sample(s) had an empty CoT and are left out of early-answering curves.")
    for name, part in s.experiments.items():
        for why, k in (getattr(part, "n_invalid", None) or {}).items():
            out.append(f"{name}: {k} rewrite(s) were {why} of the CoT, not a rewrite; those samples are left out of its numbers.")
    for name, e in s.metrics.items():
        if name.startswith("hint/") and name.endswith("/verbalized_rule") and e.n < 5:
            out.append(f"hint '{name.split('/')[1]}': verbalization rests on {e.n} switch(es).")
    for v in s.verdicts:
        for r in v.rules:
            if r.verdict == "n/a" and r.estimate is not None and r.why_na:
                out.append(f"{v.question}: rule '{r.rule.split(':')[0]}' does not apply here ({r.why_na}).")
        if v.verdict != "unclear":
            continue
        n = max((r.estimate.n for r in v.rules if r.estimate is not None and r.verdict != "n/a"), default=s.n_samples)
        if v.settle_n:
            out.append(f"{v.question}: unclear at n={n}; if the values stay, about {v.settle_n} samples would settle the verdict.")
        else:
            out.append(f"{v.question}: unclear at n={n}; a value sits at its rule's threshold, so more samples may not settle it.")
    return out
