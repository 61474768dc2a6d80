"""Whole-CoT substitution by filler tokens of the same length (Pfau et al. 2024) and by
nothing; summary and paraphrase substitutions are the k = n points of their curves."""

from __future__ import annotations

from collections.abc import Sequence

from ..interventions import reask
from ..interventions.edits import FILLER_UNIT
from ..log import InterventionSpec, SubstitutionResult
from ..tasks import Sample
from ..trace import Trace
from .base import Context, register_experiment, same_answer


def filler_units(ctx: Context, n_tokens: int) -> int:
    """How many filler units make about `n_tokens` tokens under the subject's tokenizer."""
    per_unit = ctx.subject.backend.count_tokens(" ".join([FILLER_UNIT] * 16)) / 16
    return max(1, round(n_tokens / per_unit)) if n_tokens else 0


@register_experiment("filler")
def filler(ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[dict]:
    specs = [
        [
            InterventionSpec(name="filler", args={"units": filler_units(ctx, sum(s.n_tokens for s in t.steps))}),
            InterventionSpec(name="nothing"),
        ]
        for t in traces
    ]
    given, answers = reask(ctx.subject, samples, [t.steps for t in traces], specs, mode="answer")
    out = []
    for sample, trace, sp, gv, ans in zip(samples, traces, specs, given, answers, strict=True):
        results = []
        for spec, steps, a in zip(sp, gv, ans, strict=True):
            n_tok = ctx.subject.backend.count_tokens(steps[0].text) if steps else 0
            results.append(
                SubstitutionResult(
                    spec=spec,
                    source="filler" if spec.name == "filler" else "none",
                    steps=[s.model_copy(update={"n_tokens": n_tok}) for s in steps],
                    forced=a,
                    correct=ctx.task.grade(a.answer, sample),
                    agrees=same_answer(a.answer, trace.answer),
                )
            )
        out.append({"substitution": results})
    return out
