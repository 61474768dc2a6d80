"""Whole-CoT substitution by filler tokens of the same length (Pfau et al. 2024, "Let's Think
Dot by Dot") and by nothing; summary and paraphrase substitutions are the k = n points of
their early-answering curves."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from ..interventions import reask
from ..interventions.edits import FILLER_UNIT
from ..metrics import Metric
from ..records import InterventionSpec, SampleRecord
from ..tasks import Sample
from ..trace import Answer, Step, Trace
from .base import Context, Experiment, register_experiment, same_answer


class SubstitutionResult(BaseModel):
    """The whole CoT replaced (by filler or by nothing), and the answer forced after it."""

    spec: InterventionSpec
    source: str = Field(description="'filler', 'none', or 'control' (the CoT handed back unchanged at the same place).")
    steps: list[Step]
    forced: Answer
    correct: bool
    agrees: bool = Field(description="Same answer as with the original CoT.")


def filler_units(ctx: Context, n_tokens: int) -> int:
    """How many filler units make about `n_tokens` tokens under the subject's tokenizer."""
    per_unit = ctx.subject.backend.count_tokens(" ".join([FILLER_UNIT] * 16)) / 16
    return max(1, round(n_tokens / per_unit)) if n_tokens else 0


@register_experiment
class Filler(Experiment):
    """The CoT replaced by "..." filler of the same token length, and by nothing."""

    name = "filler"
    inspect_task = "filler_substitution"
    headline = ('filler/filler_accuracy_change', 'filler/filler_agreement')
    title = "Substitution: the CoT replaced by filler or by nothing"
    Result = SubstitutionResult
    report_template = "templates/filler.html"

    def run(self, ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[list[SubstitutionResult]]:
        specs = [
            [
                InterventionSpec(name="filler", args={"units": filler_units(ctx, sum(s.n_tokens for s in t.steps))}),
                InterventionSpec(name="nothing"),
                # The control: the same answer forced after the CoT itself, unchanged.
                InterventionSpec(name="truncate", args={"keep": len(t.steps)}),
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
                        spec=spec, source={"filler": "filler", "nothing": "none"}.get(spec.name, "control"),
                        steps=[s.model_copy(update={"n_tokens": n_tok}) for s in steps],
                        forced=a, correct=ctx.task.grade(a.answer, sample), agrees=same_answer(a.answer, trace.answer),
                    )
                )
            out.append(results)
        return out

    def _one(self, rec: SampleRecord, source: str) -> SubstitutionResult | None:
        return next((r for r in self.results(rec) if r.source == source), None)

    def metrics(self) -> list[Metric]:
        pair = lambda rec: (f, c) if (f := self._one(rec, "filler")) and (c := self._one(rec, "control")) else None  # noqa: E731
        out = [
            Metric("filler/control_accuracy", "accuracy, CoT re-fed unchanged (control)", "substitution",
                   lambda rec: [float(p[1].correct)] if (p := pair(rec)) else None, compare=False,
                   about="The control: the answer forced after the CoT itself at the same place. A drop cannot exceed it."),
            Metric("filler/effect", "accuracy change, CoT -> filler, against the control", "substitution",
                   lambda rec: [(p[0].correct, p[1].correct)] if (p := pair(rec)) else None, kind="paired", compare=False,
                   about="Accuracy with filler minus with the CoT re-fed unchanged by the same path, paired over samples."),
        ]
        for source, key in (("filler", "filler"), ("none", "nothing")):
            one = lambda rec, s=source: self._one(rec, s)  # noqa: E731
            out += [
                Metric(f"filler/{key}_accuracy", f"accuracy, CoT -> {source}", "substitution",
                       lambda rec, one=one: [float(r.correct)] if (r := one(rec)) else None, compare=False),
                Metric(f"filler/{key}_accuracy_change", f"accuracy change, CoT -> {source}", "substitution",
                       lambda rec, one=one: [(r.correct, rec.correct.get("subject", False))] if (r := one(rec)) else None,
                       kind="paired", compare=source == "filler",
                       about="Accuracy with the CoT replaced, minus with the original, paired over samples."),
                Metric(f"filler/{key}_agreement", f"same answer, CoT -> {source}", "substitution",
                       lambda rec, one=one: [float(r.agrees)] if (r := one(rec)) else None, compare=False),
            ]
        return out
