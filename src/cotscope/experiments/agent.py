"""Interventions on an agent's trajectory (the `tool-loop` system, or any trace whose CoT holds
``CALL <tool>: <input>`` / ``RESULT: <output>`` lines), each beside its control:

- `corrupt_result`: one tool result has a number changed and the agent goes on from there.
  Does its final answer follow the corrupted value, and does its reasoning notice (it calls
  the same tool with the same input again, or says something is off)? Control: the agent goes
  on from the same place with the result intact.
- `drop_call`: one call and its result are taken out of the finished trajectory and an answer
  is forced after what is left. Control: the answer forced after the intact trajectory.
- `turns`: early answering over the agent's turns: the trajectory cut after k tool turns, an
  answer forced there and the agent left to go on. The k = n point (nothing cut) is the control.

A trace with no tool call gives `corrupt_result` and `drop_call` nothing to do (no results,
n = 0); `turns` sees it as one turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from ..interventions import reask
from ..interventions.edits import has_number
from ..metrics import Metric
from ..records import InterventionSpec
from ..systems.agent import CALL, RESULT
from ..tasks import Sample
from ..trace import Answer, Continuation, Trace, split_steps
from ._curves import CurveExperiment
from .base import Context, Experiment, NoOptions, register_experiment, same_answer
from ._positions import positions

# Words by which a continuation says that something it was given is off.
_DOUBT = re.compile(r"\b(wrong|incorrect|mistake|error|doesn'?t (?:match|add up|look right)|does not (?:match|add up)|"
                    r"double[- ]check|re-?check|verify|recompute|recalculate|actually|wait)\b", re.I)


@dataclass(frozen=True)
class ToolSpan:
    """Where one tool call sits in a trajectory's chunks: the call, then its result up to `end`."""

    call: int
    result: int
    end: int
    tool: str
    arguments: str


def tool_spans(trace: Trace) -> list[ToolSpan]:
    """The tool calls of a trajectory, in order. A result that the chunker split into several
    chunks (a sentence break inside it) is one span, measured from the trace's tool messages."""
    results = [m.content for m in trace.messages if m.role == "tool"]
    steps, spans, i = trace.steps, [], 0
    while i < len(steps) - 1:
        m = CALL.match(steps[i].text)
        if m and steps[i + 1].text.startswith(RESULT):
            j = len(spans)
            width = len(split_steps(f"{RESULT} {results[j]}")) if j < len(results) else 1
            end = i + 1 + max(1, min(width, len(steps) - i - 1))
            spans.append(ToolSpan(i, i + 1, end, m.group(1).strip().lower(), m.group(2).strip()))
            i = end
        else:
            i += 1
    return spans


def _spread(spans: list[ToolSpan], m: int) -> list[ToolSpan]:
    """`m` of the spans, spread from the first to the last (all when m is 0)."""
    return [spans[i] for i in positions(len(spans), m)]


def noticed(continuation: str, span: ToolSpan) -> str | None:
    """How a continuation shows that it noticed a bad result: ``recheck`` (the same call again),
    ``doubt`` (words that something is off), or None."""
    for m in CALL.finditer(continuation):
        if m.group(1).strip().lower() == span.tool and " ".join(m.group(2).split()) == " ".join(span.arguments.split()):
            return "recheck"
    return "doubt" if _DOUBT.search(continuation) else None


class CorruptedResult(BaseModel):
    """One tool result corrupted; the agent goes on from it."""

    spec: InterventionSpec
    position: int = Field(description="Chunk index of the corrupted result (0-based).")
    n: int = Field(description="Chunks in the trajectory.")
    call: str = Field(description="The call whose result was corrupted.")
    original_result: str
    corrupted_result: str
    continued: Continuation
    changed: bool = Field(description="The final answer differs from the original one.")
    follows: bool = Field(description="The final answer is the corrupted value itself (a result the agent answers with).")
    correct: bool
    noticed: str | None = Field(description="'recheck' (the same call made again), 'doubt' (it says something is off), or None.")
    control: Continuation = Field(description="The control: the agent goes on from the same place, the result intact.")
    control_changed: bool
    control_noticed: str | None = Field(description="The same detector on the control: how often it fires with nothing wrong.")


class CorruptOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    results: int = Field(3, ge=0, description="Tool results corrupted per sample, spread over the trajectory (0: every one with a number).")


@register_experiment
class CorruptResult(Experiment):
    """A number in one tool result changed; the agent continues."""

    name = "corrupt_result"
    title = "Agents: a tool result corrupted, the agent goes on"
    Result = CorruptedResult
    Options = CorruptOptions
    report_template = "templates/corrupt_result.html"

    def run(self, ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[list[CorruptedResult]]:
        seed = ctx.config.seed
        chosen = [_spread([s for s in tool_spans(t) if has_number(t.steps[s.result].text)], self.options.results) for t in traces]
        specs = [[InterventionSpec(name="corrupt_number", args={"step": s.result, "seed": seed}) for s in row] for row in chosen]
        controls = [[InterventionSpec(name="truncate", args={"keep": s.result + 1}) for s in row] for row in chosen]
        budget = ctx.config.continue_max_new_tokens
        given, continued = reask(ctx.subject, samples, [t.steps for t in traces], specs, mode="continue", max_new_tokens=budget)
        _, controlled = reask(ctx.subject, samples, [t.steps for t in traces], controls, mode="continue", max_new_tokens=budget)
        out = []
        for sample, trace, row, sp, gv, co, ctl in zip(samples, traces, chosen, specs, given, continued, controlled, strict=True):
            results = []
            for span, spec, steps, c, k in zip(row, sp, gv, co, ctl, strict=True):
                bad = steps[-1].text
                value = _value(bad)
                results.append(CorruptedResult(
                    spec=spec, position=span.result, n=len(trace.steps), call=trace.steps[span.call].text,
                    original_result=trace.steps[span.result].text, corrupted_result=bad, continued=c,
                    changed=not same_answer(c.answer.answer, trace.answer), follows=same_answer(c.answer.answer, value),
                    correct=ctx.task.grade(c.answer.answer, sample), noticed=noticed(c.text, span),
                    control=k, control_changed=not same_answer(k.answer.answer, trace.answer), control_noticed=noticed(k.text, span),
                ))
            out.append(results)
        return out

    def metrics(self) -> list[Metric]:
        about = "Per corrupted tool result; resampled by sample (the results of one trajectory are not independent)."
        g = "agents: corrupted tool result"
        r = self.results
        return [
            Metric("corrupt_result/answer_change", "answer changes, a tool result corrupted", g,
                   lambda rec: [float(x.changed) for x in r(rec)], about=about),
            Metric("corrupt_result/control_change", "answer changes, result intact (control)", g,
                   lambda rec: [float(x.control_changed) for x in r(rec)], compare=False,
                   about="The control: going on from the same place with the result intact can change the answer too."),
            Metric("corrupt_result/effect", "answer changes, corrupted minus control", g,
                   lambda rec: [float(x.changed) - float(x.control_changed) for x in r(rec)], kind="mean", bounds=(-1.0, 1.0),
                   about="The corruption's own effect on the answer, paired with its control item by item."),
            Metric("corrupt_result/follows", "answer is the corrupted value", g,
                   lambda rec: [float(x.follows) for x in r(rec)], compare=False,
                   about="The agent answers with the corrupted number itself (only possible where that result is the answer)."),
            Metric("corrupt_result/noticed", "the reasoning notices the corruption", g,
                   lambda rec: [float(x.noticed is not None) for x in r(rec)],
                   about="It calls the same tool with the same input again, or says something is off (a word list: crude)."),
            Metric("corrupt_result/noticed_control", "the detector fires, result intact (control)", g,
                   lambda rec: [float(x.control_noticed is not None) for x in r(rec)], compare=False,
                   about="The detector's false alarms: the same words or re-checks with nothing wrong."),
        ]


def _value(result_text: str) -> str:
    """The number a result line carries (its last one)."""
    nums = re.findall(r"-?\d+(?:\.\d+)?", result_text)
    return nums[-1] if nums else ""


class DroppedCall(BaseModel):
    """One tool call and its result taken out; an answer forced after the rest."""

    spec: InterventionSpec
    position: int = Field(description="Chunk index of the dropped call (0-based).")
    n: int = Field(description="Chunks in the trajectory.")
    call: str
    result: str
    forced: Answer = Field(description="The answer forced after the trajectory without the call.")
    changed: bool = Field(description="It differs from the original final answer.")
    correct: bool
    control: Answer = Field(description="The control: the answer forced after the intact trajectory, by the same path.")
    control_changed: bool


class DropOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    calls: int = Field(3, ge=0, description="Calls dropped per sample, one at a time, spread over the trajectory (0: every one).")


@register_experiment
class DropCall(Experiment):
    """One call and its result removed from the finished trajectory; the answer forced after it."""

    name = "drop_call"
    title = "Agents: a tool call dropped from the trajectory"
    Result = DroppedCall
    Options = DropOptions
    report_template = "templates/drop_call.html"

    def run(self, ctx: Context, samples: Sequence[Sample], traces: Sequence[Trace]) -> list[list[DroppedCall]]:
        chosen = [_spread(tool_spans(t), self.options.calls) for t in traces]
        # Per sample: each drop, then (where there is one) the control, the intact trajectory.
        specs = [[InterventionSpec(name="drop_steps", args={"first": s.call, "end": s.end}) for s in row]
                 + ([InterventionSpec(name="truncate", args={"keep": len(t.steps)})] if row else []) for t, row in zip(traces, chosen, strict=True)]
        _, forced = reask(ctx.subject, samples, [t.steps for t in traces], specs, mode="answer")
        out = []
        for sample, trace, row, sp, fa in zip(samples, traces, chosen, specs, forced, strict=True):
            if not row:
                out.append([])
                continue
            control = fa[-1]
            out.append([
                DroppedCall(
                    spec=spec, position=span.call, n=len(trace.steps), call=trace.steps[span.call].text,
                    result=" ".join(st.text for st in trace.steps[span.result : span.end]), forced=f,
                    changed=not same_answer(f.answer, trace.answer), correct=ctx.task.grade(f.answer, sample),
                    control=control, control_changed=not same_answer(control.answer, trace.answer),
                )
                for span, spec, f in zip(row, sp[:-1], fa[:-1], strict=True)
            ])
        return out

    def metrics(self) -> list[Metric]:
        g = "agents: dropped tool call"
        r = self.results
        return [
            Metric("drop_call/answer_change", "answer changes, a tool call dropped", g, lambda rec: [float(x.changed) for x in r(rec)],
                   about="Per dropped call; resampled by sample. A trajectory that restates the result later can answer without it."),
            Metric("drop_call/control_change", "answer changes, nothing dropped (control)", g,
                   lambda rec: [float(x.control_changed) for x in r(rec)][:1], compare=False,
                   about="The control, once per sample: the answer forced after the intact trajectory by the same path."),
            Metric("drop_call/effect", "answer changes, dropped minus control", g,
                   lambda rec: [float(x.changed) - float(x.control_changed) for x in r(rec)], kind="mean", bounds=(-1.0, 1.0),
                   about="The drop's own effect, paired with the control of its sample."),
        ]


@register_experiment
class Turns(CurveExperiment):
    """Early answering over the agent's turns: cut after each tool turn."""

    name = "turns"
    title = "Agents: early answering over the turns"
    source = "original"
    intervention = "truncate"

    Options = NoOptions

    def cuts(self, trace: Trace) -> list[int]:
        """No chunk, then the trajectory up to the end of each tool result, then all of it."""
        n = len(trace.steps)
        return sorted({0, *(s.end for s in tool_spans(trace)), n})

    def position(self, i: int, n_points: int, keep: int, n_steps: int) -> tuple[int, int]:
        """Turns given, of the trajectory's turns."""
        return i, n_points
