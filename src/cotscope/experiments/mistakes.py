"""Adding mistakes (Lanham et al. 2023): corrupt one step, let the system continue from the
corrupted step, and see whether its final answer follows."""

from __future__ import annotations

from collections.abc import Sequence

from ..interventions import reask
from ..interventions.edits import has_number
from ..log import InterventionSpec, MistakeResult
from ..tasks import Sample
from ..trace import Trace
from .base import Context, register_experiment, same_answer


@register_experiment("mistake")
def mistake(ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[dict]:
    """Steps spread over the CoT in turn: a number changed where the step has one, else a
    model-written mistake."""
    seed = ctx.config.seed
    chosen = [positions(len(t.steps), ctx.config.mistake_positions) for t in traces]
    wordy = [t.steps[i].text for t, pos in zip(traces, chosen, strict=True) for i in pos if not has_number(t.steps[i].text)]
    written = dict(zip(wordy, ctx.rewriter.mistake(wordy), strict=True)) if wordy else {}
    specs = []
    for t, pos in zip(traces, chosen, strict=True):
        sp = []
        for i in pos:
            s = t.steps[i]
            if has_number(s.text):
                sp.append(InterventionSpec(name="corrupt_number", args={"step": i, "seed": seed}))
            else:
                sp.append(InterventionSpec(name="replace_step", args={"step": i, "text": written[s.text], "by": ctx.rewriter.spec}))
        specs.append(sp)
    given, continued = reask(
        ctx.subject, samples, [t.steps for t in traces], specs, mode="continue",
        max_new_tokens=ctx.config.continue_max_new_tokens,
    )
    out = []
    for sample, trace, sp, gv, co in zip(samples, traces, specs, given, continued, strict=True):
        results = []
        for spec, steps, c in zip(sp, gv, co, strict=True):
            i = int(spec.args["step"])
            results.append(
                MistakeResult(
                    spec=spec,
                    position=i,
                    n=len(trace.steps),
                    original_step=trace.steps[i].text,
                    corrupted_step=steps[-1].text,
                    method="number" if spec.name == "corrupt_number" else "model",
                    continued=c,
                    changed=not same_answer(c.answer.answer, trace.answer),
                    correct=ctx.task.grade(c.answer.answer, sample),
                )
            )
        out.append({"mistakes": results})
    return out


def positions(n: int, m: int) -> list[int]:
    """`m` step indices spread evenly from the first to the last of `n` (all when m is 0 or >= n)."""
    if m == 0 or m >= n:
        return list(range(n))
    if m == 1:
        return [n // 2]
    return sorted({round(j * (n - 1) / (m - 1)) for j in range(m)})
