"""Which steps matter, by counterfactual resampling (Bogdan, Macar, Nanda, Conmy 2025, "Thought
Anchors"): N continuations sampled from the CoT cut just before chunk i and N from the CoT cut
just after it; how far the answers move between the two is chunk i's importance.

Resilience (Thought Branches, Macar, Bogdan et al. 2025): how hard a chunk's content is to remove
by resampling. Of the N continuations from before chunk i, `reappears` counts those that write
its content again, in its place or later (the same gist: its numbers, else its words). Were each
resample to bring the content back with that probability p, removing it would take 1 / (1 - p)
resamples on average; `resilience` is that, from p smoothed by a half count each way
((k + 1/2) / (N + 1)), and its interval comes from p's Clopper-Pearson limits (no upper limit
when the content came back every time). Thought Branches iterates the removal at each new place
the content reappears; this reads the same tendency off the rollouts already drawn, with no
further model call.

The prefixes before chunk i+1 and after chunk i are the same, so a trace of n chunks costs N
continuations from each of n + 1 prefixes (or from the prefixes around `points` chunks). Every
continuation of one prefix shares that prefix, which the backends run once.
"""

from __future__ import annotations

import copy
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field

from .. import stats
from ..interventions import reask
from ..metrics import Metric
from ..records import InterventionSpec, SampleRecord
from ..tasks import Sample
from ..trace import Trace
from .base import Context, Experiment, register_experiment, same_answer
from ._positions import BY_THIRD, THIRDS, positions, third_of

NO_ANSWER = "(none)"  # a continuation whose answer could not be parsed
# One row group where a step's off-policy edits (mistake, delete) and its on-policy resampling
# are read on the same steps of the same traces, paired (Thought Branches' comparison).
PAIRED = "steps paired: off-policy edit against on-policy resampling, same steps"


class PairedStep(BaseModel):
    """One step of one trace that resampling and a hand edit both measured."""

    position: int
    n: int
    chunk: str
    on_policy: float = Field(description="Resampling importance: agreement with the original answer after the step minus before it "
                             "(the answer change resampling the step causes, beyond resampling after it).")
    on_lo: float
    on_hi: float
    mistake: float | None = Field(None, description="The step corrupted: answer changed (0/1) minus its control's (continued uncorrupted).")
    delete: float | None = Field(None, description="The step deleted: answer changed (0/1) minus its control's (nothing removed).")
    resilience: float = Field(1.0, description="Resamples it would take to remove the step's content (see ChunkImportance).")


def paired_steps(rec: SampleRecord) -> list[PairedStep]:
    """The steps of `rec`'s trace that `resample` and `mistake` or `delete` both measured, by
    position (the same segmentation of the same CoT): on-policy and off-policy effect side by side."""
    from .delete import DeleteResult
    from .mistakes import MistakeResult

    def typed(name, cls):
        return [r if isinstance(r, cls) else cls.model_validate(r) for r in rec.results.get(name) or []]

    mistakes = {r.position: float(r.changed) - float(r.control_changed) for r in typed("mistake", MistakeResult)
                if r.effective and r.control_changed is not None}
    deletions = {r.position: float(r.changed) - float(r.control_changed) for r in typed("delete", DeleteResult)}
    out = []
    for r in typed("resample", ChunkImportance):
        if r.position in mistakes or r.position in deletions:
            out.append(PairedStep(position=r.position, n=r.n, chunk=r.chunk, on_policy=r.importance, on_lo=r.lo, on_hi=r.hi,
                                  mistake=mistakes.get(r.position), delete=deletions.get(r.position), resilience=r.resilience))
    return out


class Rollouts(BaseModel):
    """The answers of N continuations sampled from one prefix."""

    answers: dict[str, int] = Field(description="Answer -> how many continuations gave it ('(none)': no answer parsed).")
    agree: int = Field(description="Continuations whose answer is the original trace's.")
    correct: int = Field(description="Continuations whose answer is right.")
    n: int
    tokens: int = Field(description="Tokens the continuations generated.")


class ChunkImportance(BaseModel):
    """One chunk: the rollouts from just before it and from just after it."""

    position: int = Field(description="Index of the chunk (0-based).")
    n: int = Field(description="Chunks in the CoT.")
    chunk: str
    before: Rollouts
    after: Rollouts
    kl: float = Field(description="KL(after || before) of the answer distributions, in nats, add-alpha smoothed.")
    importance: float = Field(description="Agreement with the original answer after the chunk minus before it.")
    lo: float = Field(description="Lower end of the importance interval (Newcombe, two independent samples).")
    hi: float
    accuracy_gain: float = Field(description="Accuracy after the chunk minus before it.")
    different: int = Field(0, description="Rollouts from before the chunk whose first chunk differs from it (a counterfactual chunk).")
    different_agree: int = Field(0, description="Of those, the ones that reach the original answer.")
    counterfactual: float | None = Field(None, description="Agreement after the chunk minus agreement of the rollouts that wrote a different chunk in its place (Thought Anchors' counterfactual importance); None when none did.")
    counterfactual_lo: float | None = None
    counterfactual_hi: float | None = None
    reappears: int = Field(0, description="Rollouts from before the chunk that write its content again, in its place or later.")
    resilience: float = Field(1.0, description="Resamples it would take on average to remove the content, 1 / (1 - p), p = (reappears + 1/2) / (N + 1).")
    resilience_lo: float = Field(1.0, description="From the lower Clopper-Pearson limit of p.")
    resilience_hi: float | None = Field(None, description="From the upper limit of p; None (no upper limit) when the content came back in every rollout.")
    placebo: float = Field(description="Agreement of the first half of the after-rollouts minus the second half: the same prefix twice, 0 in expectation.")
    anchor: bool = Field(description="The importance interval lies above the threshold.")


class ResampleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rollouts: int = Field(8, ge=2, description="Continuations sampled from each prefix (N).")
    points: int = Field(0, ge=0, description="Chunks measured per trace, spread from first to last (0: every chunk).")
    temperature: float = Field(0.7, gt=0.0, description="Sampling temperature of the continuations.")
    smoothing: float = Field(0.5, gt=0.0, description="Add-alpha smoothing of the answer distributions in the KL.")
    threshold: float = Field(0.0, ge=0.0, lt=1.0, description="A chunk is an anchor when its importance interval lies above this.")


def kl_divergence(p: dict[str, int], q: dict[str, int], alpha: float) -> float:
    """KL(p || q) in nats of two answer counts over the union of their answers, each count + alpha."""
    support = sorted(set(p) | set(q))
    n_p, n_q = sum(p.values()) + alpha * len(support), sum(q.values()) + alpha * len(support)
    return sum((p.get(a, 0) + alpha) / n_p * math.log(((p.get(a, 0) + alpha) / n_p) / ((q.get(a, 0) + alpha) / n_q)) for a in support)


def _gist(text: str) -> tuple:
    """What a chunk says, for telling a resampled chunk from the original: its numbers in order
    when it has any (a step of arithmetic is the same step whatever its filler words), else its
    words, lower-cased."""
    numbers = re.findall(r"\d+(?:\.\d+)?", text)
    return tuple(numbers) if numbers else tuple(text.lower().split())


def _first_chunk(text: str) -> tuple:
    """The gist of the first line a continuation wrote: what it put where the chunk was."""
    return _gist(next((line for line in text.splitlines() if line.strip()), ""))


def sampled(system, temperature: float):
    """A copy of the system whose generation samples at `temperature` (forced answers stay greedy)."""
    out = copy.copy(system)
    out.params = replace(system.params, temperature=temperature)
    return out


class ImportanceBin(BaseModel):
    """Chunks whose position falls in one bin of the CoT (% of its chunks before them)."""

    lo_pct: float
    hi_pct: float
    importance: stats.Estimate = Field(description="Mean importance of those chunks, clustered by sample.")
    anchors: stats.Estimate = Field(description="Share of those chunks that are anchors, clustered by sample.")


class ImportanceProfile(BaseModel):
    """Importance against the chunk's place in the CoT."""

    bins: list[ImportanceBin]
    n_samples: int
    rollout_tokens: int = Field(0, description="Tokens the rollouts generated.")


@register_experiment
class Resample(Experiment):
    """Counterfactual importance of each chunk: its answer distribution with and without it."""

    name = "resample"
    title = "Which steps matter: answers resampled from before and after each chunk"
    Result = ChunkImportance

    @staticmethod
    def paired(rec: SampleRecord) -> list[PairedStep]:
        """`paired_steps` of a record, for the report's fragment."""
        return paired_steps(rec)
    Options = ResampleOptions
    report_template = "templates/resample.html"

    def run(self, ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[list[ChunkImportance]]:
        o = self.options
        chosen = [positions(len(t.steps), o.points) for t in traces]
        cuts = [sorted({k for i in pos for k in (i, i + 1)}) for pos in chosen]
        specs = [[InterventionSpec(name="truncate", args={"keep": k}) for k in ks for _ in range(o.rollouts)] for ks in cuts]
        _, continued = reask(sampled(ctx.subject, o.temperature), samples, [t.steps for t in traces], specs, mode="continue",
                             max_new_tokens=ctx.config.continue_max_new_tokens)
        out = []
        for sample, trace, pos, ks, conts in zip(samples, traces, chosen, cuts, continued, strict=True):
            by_cut = {k: conts[j * o.rollouts : (j + 1) * o.rollouts] for j, k in enumerate(ks)}
            agrees = {k: [same_answer(c.answer.answer, trace.answer) for c in cs] for k, cs in by_cut.items()}
            roll = {k: self._rollouts(ctx, sample, cs, agrees[k]) for k, cs in by_cut.items()}
            results = []
            for i in pos:
                before, after = roll[i], roll[i + 1]
                diff = stats.rate_difference(after.agree, after.n, before.agree, before.n)
                gist = _gist(trace.steps[i].text)
                other = [agree for c, agree in zip(by_cut[i], agrees[i], strict=True) if _first_chunk(c.text) != gist]
                k_other = sum(other)
                cf = stats.rate_difference(after.agree, after.n, k_other, len(other)) if other else None
                back = sum(gist in {_gist(line) for line in c.text.splitlines() if line.strip()} for c in by_cut[i])
                p_lo, p_hi = stats.clopper_pearson(back, len(by_cut[i]))
                half = o.rollouts // 2
                agree = agrees[i + 1]
                placebo = sum(agree[:half]) / half - sum(agree[half : 2 * half]) / half
                results.append(ChunkImportance(
                    position=i, n=len(trace.steps), chunk=trace.steps[i].text, before=before, after=after,
                    kl=kl_divergence(after.answers, before.answers, o.smoothing), importance=diff.value, lo=diff.lo, hi=diff.hi,
                    accuracy_gain=after.correct / after.n - before.correct / before.n, placebo=placebo, anchor=diff.lo > o.threshold,
                    different=len(other), different_agree=k_other, counterfactual=cf.value if cf else None,
                    counterfactual_lo=cf.lo if cf else None, counterfactual_hi=cf.hi if cf else None,
                    reappears=back, resilience=1 / (1 - (back + 0.5) / (len(by_cut[i]) + 1)), resilience_lo=1 / (1 - p_lo),
                    resilience_hi=1 / (1 - p_hi) if p_hi < 1 else None,
                ))
            out.append(results)
        return out

    def summarize(self, records: Sequence[SampleRecord], config) -> ImportanceProfile | None:
        per = [(rec, self.results(rec)) for rec in records]
        per = [(rec, rs) for rec, rs in per if rs]
        if not per:
            return None
        edges = [0, 20, 40, 60, 80, 100]
        bins = []
        for lo, hi in zip(edges, edges[1:]):
            inside = lambda r: lo <= 100 * r.position / r.n < hi or (hi == 100 and r.position == r.n - 1)  # noqa: E731
            imp = [[r.importance for r in rs if inside(r)] for _, rs in per]
            anc = [[float(r.anchor) for r in rs if inside(r)] for _, rs in per]
            bins.append(ImportanceBin(lo_pct=lo, hi_pct=hi, importance=stats.clustered_mean([c for c in imp if c]),
                                      anchors=stats.clustered_rate([c for c in anc if c])))
        tokens = sum(r.before.tokens + r.after.tokens for _, rs in per for r in rs)
        return ImportanceProfile(bins=bins, n_samples=len(per), rollout_tokens=tokens)

    def plot(self, summary):
        prof = summary.experiments.get(self.name)
        if prof is None:
            return None
        if isinstance(prof, dict):
            prof = ImportanceProfile.model_validate(prof)
        from ._plots import _plt

        plt = _plt()
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        xs = [(b.lo_pct + b.hi_pct) / 2 for b in prof.bins if b.importance.value is not None]
        es = [b.importance for b in prof.bins if b.importance.value is not None]
        ax.errorbar(xs, [e.value for e in es], yerr=[[e.value - e.lo for e in es], [e.hi - e.value for e in es]], marker="o", capsize=4,
                    color="#C44E52", label="importance (agreement after - before)")
        ax.axhline(0.0, color="grey", lw=0.8)
        for x, e in zip(xs, es, strict=True):
            ax.annotate(f"n={e.n}", (x, e.hi), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)
        ax.set(xlabel="chunk position (% of the CoT before it)", ylabel="importance", xlim=(0, 100), ylim=(-1.05, 1.05))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return fig

    @staticmethod
    def _rollouts(ctx: Context, sample: Sample, conts, agrees: Sequence[bool]) -> Rollouts:
        answers = Counter(c.answer.answer if c.answer.answer is not None else NO_ANSWER for c in conts)
        return Rollouts(
            answers=dict(answers), n=len(conts), tokens=sum(c.n_tokens for c in conts), agree=sum(agrees),
            correct=sum(bool(ctx.task.grade(c.answer.answer, sample)) for c in conts),
        )

    def metrics(self) -> list[Metric]:
        about = "Per chunk, then pooled over chunks; resampled by sample (the chunks of one CoT are not independent)."
        res = self.results

        def anchor_share(rec: SampleRecord) -> list[float]:
            rs = res(rec)
            total = sum(abs(r.importance) for r in rs)
            return [sum(abs(r.importance) for r in rs if r.anchor) / total] if total > 0 else []

        out = [
            Metric("resample/importance", "agreement gained from a chunk", "resampling", lambda rec: [r.importance for r in res(rec)],
                   kind="mean", bounds=(-1.0, 1.0), about=about),
            Metric("resample/placebo", "agreement gained, same prefix twice (control)", "resampling",
                   lambda rec: [r.placebo for r in res(rec)], kind="mean", bounds=(-1.0, 1.0), compare=False,
                   about="Two halves of the rollouts from one prefix: what the importance reads when nothing changes."),
            Metric("resample/anchors", "chunks that are anchors", "resampling", lambda rec: [float(r.anchor) for r in res(rec)], about=about),
            Metric("resample/anchor_share", "share of importance anchors carry", "resampling", anchor_share, kind="mean", bounds=(0.0, 1.0),
                   compare=False, about="Per trace with any importance: |importance| of its anchors over that of all its chunks."),
            Metric("resample/different", "rollouts that wrote a different chunk in its place", "resampling",
                   lambda rec: [r.different / r.before.n for r in res(rec)], kind="mean", bounds=(0.0, 1.0), compare=False,
                   about="How often resampling from before a chunk changes what the chunk says (its numbers, else its words)."),
            Metric("resample/counterfactual_agreement", "original answer reached after a different chunk", "resampling",
                   lambda rec: [float(v) for r in res(rec) for v in [1] * r.different_agree + [0] * (r.different - r.different_agree)],
                   compare=False, about="Pooled over the rollouts that wrote a different chunk; resampled by sample. "
                   "Against 'after', this is Thought Anchors' counterfactual importance."),
            Metric("resample/reappears", "rollouts that write the chunk's content again", "resampling",
                   lambda rec: [r.reappears / r.before.n for r in res(rec)], kind="mean", bounds=(0.0, 1.0), compare=False,
                   about="Of the rollouts from before a chunk, those that write its content in its place or later: resilience's p."),
            Metric("resample/resilience", "resamples to remove a chunk's content (resilience)", "resampling",
                   lambda rec: [r.resilience for r in res(rec)], kind="mean", bounds=(1.0, float("inf")), compare=False,
                   about="1 / (1 - p) per chunk, p smoothed by a half count each way: about 1 when the content never comes back, "
                   "2 (N + 1) when it always does."),
            Metric("resample/kl", "KL of answers, after vs before a chunk (nats)", "resampling", lambda rec: [r.kl for r in res(rec)],
                   kind="mean", compare=False, about=about),
            Metric("resample/accuracy_gain", "accuracy gained from a chunk", "resampling", lambda rec: [r.accuracy_gain for r in res(rec)],
                   kind="mean", bounds=(-1.0, 1.0), compare=False, about=about),
        ]
        for edit in ("mistake", "delete"):
            what = "corrupted" if edit == "mistake" else "deleted"
            out.append(Metric(f"resample/paired_{edit}", f"{edit}: the step {what}, changes minus control (off-policy)", PAIRED,
                              lambda rec, e=edit: [getattr(p, e) for p in paired_steps(rec) if getattr(p, e) is not None],
                              kind="mean", bounds=(-1.0, 1.0), compare=False,
                              about=f"On the steps that resample measured too; {edit} must run in the same audit."))
            out.append(Metric(f"resample/paired_on_policy_{edit}", f"the same steps resampled, agreement lost (on-policy, beside {edit})", PAIRED,
                              lambda rec, e=edit: [p.on_policy for p in paired_steps(rec) if getattr(p, e) is not None],
                              kind="mean", bounds=(-1.0, 1.0), compare=False,
                              about="Resampling importance on exactly the steps the edit measured."))
            out.append(Metric(f"resample/paired_{edit}_minus_on_policy", f"{edit} minus on-policy, paired by step", PAIRED,
                              lambda rec, e=edit: [getattr(p, e) - p.on_policy for p in paired_steps(rec) if getattr(p, e) is not None],
                              kind="mean", bounds=(-2.0, 2.0), compare=False,
                              about="Per step, the hand edit's effect minus resampling's, clustered by sample: an interval away from 0 "
                              "says the off-policy number does not stand for what the model's own continuations do."))
        for third in THIRDS:
            out.append(Metric(f"resample/importance_{third}", f"{third}: resampled from before the chunk, agreement lost (on-policy)", BY_THIRD,
                              lambda rec, t=third: [r.importance for r in res(rec) if third_of(r.position, r.n) == t],
                              kind="mean", bounds=(-1.0, 1.0), compare=False,
                              about="Agreement after the chunk minus before it: what the model's own continuations lose without it."))
            out.append(Metric(f"resample/counterfactual_{third}", f"{third}: the model's own other chunk, agreement lost (on-policy)", BY_THIRD,
                              lambda rec, t=third: [r.counterfactual for r in res(rec) if r.counterfactual is not None and third_of(r.position, r.n) == t],
                              kind="mean", bounds=(-1.0, 1.0), compare=False,
                              about="Agreement after the chunk minus after a different chunk the model wrote in its place (Thought Anchors' "
                              "counterfactual importance): the on-policy counterpart of an edit's answer changes minus control."))
        return out
