"""Early answering: the system given the first k of its n CoT chunks, for every k."""

from __future__ import annotations

from collections.abc import Sequence

from ..log import InterventionSpec, TruncationPoint
from ..systems import Answer, Continuation, System
from ..tasks import Sample, Task
from ..trace import Step, Trace
from .base import Edit, reask, register_intervention


@register_intervention("truncate")
def truncate(keep: int) -> Edit:
    """Keep the first `keep` chunks of the CoT."""

    def edit(steps: list[Step]) -> list[Step]:
        return steps[:keep]

    return edit


def run_truncation(
    system: System, task: Task, samples: Sequence[Sample], traces: Sequence[Trace], continue_max_new_tokens: int
) -> list[list[TruncationPoint]]:
    """For each sample and each k in 0..n: force an answer after k chunks, and (k < n) let the
    system continue from k chunks. All points of all samples go to the backend in two batches."""
    specs = [[InterventionSpec(name="truncate", args={"keep": k}) for k in range(len(t.steps) + 1)] for t in traces]
    steps = [t.steps for t in traces]
    forced = reask(system, samples, steps, specs, mode="answer")
    cont_specs = [sp[:-1] for sp in specs]  # continuing from the whole CoT is the trace itself
    continued = reask(system, samples, steps, cont_specs, mode="continue", max_new_tokens=continue_max_new_tokens)
    out = []
    for sample, trace, sp, fa, co in zip(samples, traces, specs, forced, continued, strict=True):
        n = len(trace.steps)
        points = []
        for k, spec in enumerate(sp):
            f: Answer = fa[k]  # type: ignore[assignment]
            c: Continuation | None = co[k] if k < n else None  # type: ignore[assignment]
            points.append(
                TruncationPoint(
                    spec=spec,
                    k=k,
                    n=n,
                    fraction=k / n if n else 1.0,
                    n_tokens_given=sum(s.n_tokens for s in trace.steps[:k]),
                    forced=f,
                    forced_correct=task.grade(f.answer, sample),
                    forced_agrees=_same(f.answer, trace.answer),
                    continued=c,
                    continued_correct=task.grade(c.answer.answer, sample) if c else None,
                    continued_agrees=_same(c.answer.answer, trace.answer) if c else None,
                )
            )
        out.append(points)
    return out


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().lower() == b.strip().lower()
