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
    """Every step in turn: a number changed where the step has one, else a model-written mistake."""
    seed = ctx.config.seed
    wordy = [s.text for t in traces for s in t.steps if not has_number(s.text)]
    written = dict(zip(wordy, ctx.rewriter.mistake(wordy), strict=True)) if wordy else {}
    specs = []
    for t in traces:
        sp = []
        for i, s in enumerate(t.steps):
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

