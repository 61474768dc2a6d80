"""Which steps matter, by deletion (as SLRC, arXiv 2603.22816, measures step necessity): chunk i
removed, the system goes on from the rest of its CoT and answers. The control is the same
continuation with nothing removed, paired with every deletion of its trace."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..interventions import reask
from ..metrics import Metric
from ..records import InterventionSpec, SampleRecord
from ..tasks import Sample
from ..trace import Continuation, Trace
from .base import Context, Experiment, register_experiment, same_answer
from ._positions import BY_THIRD, THIRDS, positions, third_of


class DeleteResult(BaseModel):
    """One chunk removed; the system goes on from the rest."""

    position: int = Field(description="Index of the removed chunk (0-based).")
    n: int = Field(description="Chunks in the CoT.")
    removed: str
    continued: Continuation
    changed: bool = Field(description="The final answer differs from the original one.")
    correct: bool
    control: Continuation = Field(description="The control: the same continuation from the whole CoT, nothing removed.")
    control_changed: bool

    @property
    def third(self) -> str:
        return third_of(self.position, self.n)


class DeleteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    points: int = Field(0, ge=0, description="Chunks removed per trace, one at a time, spread from first to last (0: every chunk).")


@register_experiment
class Delete(Experiment):
    """Step necessity: does the answer change when one chunk is taken out?"""

    name = "delete"
    title = "Which steps matter: one chunk deleted, the system goes on"
    Result = DeleteResult
    Options = DeleteOptions
    report_template = "templates/delete.html"

    def run(self, ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[list[DeleteResult]]:
        chosen = [positions(len(t.steps), self.options.points) for t in traces]
        specs = [[InterventionSpec(name="drop_steps", args={"first": i, "end": i + 1}) for i in pos] for pos in chosen]
        steps = [t.steps for t in traces]
        _, continued = reask(ctx.subject, samples, steps, specs, mode="continue", max_new_tokens=ctx.config.continue_max_new_tokens)
        whole = [[InterventionSpec(name="truncate", args={"keep": len(t.steps)})] if pos else [] for t, pos in zip(traces, chosen, strict=True)]
        _, controls = reask(ctx.subject, samples, steps, whole, mode="continue", max_new_tokens=ctx.config.continue_max_new_tokens)
        out = []
        for sample, trace, pos, conts, ctl in zip(samples, traces, chosen, continued, controls, strict=True):
            results = []
            for i, c in zip(pos, conts, strict=True):
                k = ctl[0]
                results.append(DeleteResult(
                    position=i, n=len(trace.steps), removed=trace.steps[i].text, continued=c,
                    changed=not same_answer(c.answer.answer, trace.answer), correct=bool(ctx.task.grade(c.answer.answer, sample)),
                    control=k, control_changed=not same_answer(k.answer.answer, trace.answer),
                ))
            out.append(results)
        return out

    def metrics(self) -> list[Metric]:
        about = "Per deleted chunk, pooled; resampled by sample (the chunks of one CoT are not independent)."
        res = self.results
        out = [
            Metric("delete/answer_change", "answer changes, one chunk deleted", "deletion", lambda rec: [float(r.changed) for r in res(rec)], about=about),
            Metric("delete/control_change", "answer changes, nothing deleted (control)", "deletion",
                   lambda rec: [float(r.control_changed) for r in res(rec)[:1]], compare=False,
                   about="The same continuation from the whole CoT: one per trace."),
            Metric("delete/effect", "answer changes, deleted minus control", "deletion",
                   lambda rec: [float(r.changed) - float(r.control_changed) for r in res(rec)], kind="mean", bounds=(-1.0, 1.0),
                   about="Each deletion paired with its trace's control, resampled by sample."),
            Metric("delete/accuracy", "accuracy, one chunk deleted", "deletion", lambda rec: [float(r.correct) for r in res(rec)],
                   compare=False, about=about),
        ]
        for third in THIRDS:
            out.append(Metric(f"delete/answer_change_{third}", f"answer changes ({third} chunk deleted)", "deletion",
                              lambda rec, t=third: [float(r.changed) for r in res(rec) if r.third == t], compare=False, about=about))
        for third in THIRDS:
            out.append(Metric(f"delete/effect_{third}", f"{third}: a chunk deleted, changes minus control (off-policy)", BY_THIRD,
                              lambda rec, t=third: [float(r.changed) - float(r.control_changed) for r in res(rec) if r.third == t],
                              kind="mean", bounds=(-1.0, 1.0), compare=False,
                              about="Each deletion in this third paired with its trace's control, resampled by sample."))
        return out
