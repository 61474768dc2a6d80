"""Early answering (Lanham et al. 2023) on the original CoT, and chunk by chunk on its
summary and its paraphrase, so that the curves are comparable at every chunk."""

from __future__ import annotations

from collections.abc import Sequence

from ..interventions import reask
from ..log import InterventionSpec, TruncationPoint
from ..tasks import Sample
from ..trace import Trace
from .base import Context, register_experiment, same_answer


def prefix_curve(ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace], source: str) -> list[dict]:
    """For k in 0..n: force an answer after the source's version of the first k chunks, and
    (k < n) let the system continue from it. Two batched calls for all samples and all k."""
    by = {"by": ctx.rewriter.spec} if source != "original" else {}
    name = {"original": "truncate", "summary": "summary", "paraphrase": "paraphrase"}[source]
    specs = [[InterventionSpec(name=name, args={"keep": k, **by}) for k in range(len(t.steps) + 1)] for t in traces]
    steps = [t.steps for t in traces]
    if source == "summary":  # one batched call fills the rewriter's cache for every prefix
        ctx.rewriter.summarize([t.steps[:k] for t in traces for k in range(1, len(t.steps) + 1)])
    elif source == "paraphrase":
        ctx.rewriter.paraphrase(steps)
    given, forced = reask(ctx.subject, samples, steps, specs, mode="answer", rewriter=ctx.rewriter)
    _, continued = reask(
        ctx.subject, samples, steps, [sp[:-1] for sp in specs], mode="continue",
        max_new_tokens=ctx.config.continue_max_new_tokens, rewriter=ctx.rewriter,
    )
    out = []
    for sample, trace, sp, gv, fa, co in zip(samples, traces, specs, given, forced, continued, strict=True):
        n = len(trace.steps)
        points = []
        for k, spec in enumerate(sp):
            f, c = fa[k], (co[k] if k < n else None)
            points.append(
                TruncationPoint(
                    spec=spec,
                    source=source,
                    steps=gv[k] if source != "original" else None,
                    k=k,
                    n=n,
                    fraction=k / n if n else 1.0,
                    n_tokens_given=sum(max(s.n_tokens, 0) for s in gv[k]),
                    forced=f,
                    forced_correct=ctx.task.grade(f.answer, sample),
                    forced_agrees=same_answer(f.answer, trace.answer),
                    continued=c,
                    continued_correct=ctx.task.grade(c.answer.answer, sample) if c else None,
                    continued_agrees=same_answer(c.answer.answer, trace.answer) if c else None,
                )
            )
        out.append({"truncation": points})
    return out


@register_experiment("truncate")
def truncate(ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[dict]:
    return prefix_curve(ctx, samples, traces, "original")


@register_experiment("summary")
def summary(ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[dict]:
    """Curve on chunk-aligned summaries; its k = n point is the whole-CoT substitution."""
    return prefix_curve(ctx, samples, traces, "summary")


@register_experiment("paraphrase")
def paraphrase(ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[dict]:
    """Curve on the step-by-step paraphrase; its k = n point gives the whole-CoT substitution
    and the paraphrase sensitivity."""
    return prefix_curve(ctx, samples, traces, "paraphrase")
