"""Metrics of every audit, whatever experiments run: accuracy, the CoT's gain, its cost."""

from __future__ import annotations

from .base import Metric, register_metric


def _correct(role: str):
    return lambda rec: [float(rec.correct[role])] if role in rec.correct else None


register_metric(Metric("accuracy/subject", "{system}", "accuracy", _correct("subject"), about="Graded final answer of the system under audit, cut CoTs included: what it achieves on its budget.", complete_only=False))
register_metric(Metric("accuracy/baseline", "{baseline}", "accuracy", _correct("baseline"), about="The baseline system on the same samples.", complete_only=False))
register_metric(
    Metric(
        "accuracy/cot_gain", "CoT gain ({system} - {baseline})", "accuracy",
        lambda rec: [(rec.correct["subject"], rec.correct["baseline"])] if {"subject", "baseline"} <= rec.correct.keys() else None,
        kind="paired", compare=False, complete_only=False, about="Subject minus baseline accuracy, paired over samples.",
    )
)
register_metric(
    Metric(
        "cost/tokens", "tokens generated per question (geometric mean)", "cost",
        lambda rec: [float(rec.traces["subject"].n_generated_tokens)], kind="gmean", percent=False, complete_only=False, bounds=(0.0, float("inf")),
        about="Every token the system generated for its trace, all roles together.",
    )
)
register_metric(
    Metric(
        "cost/cot_steps", "chunks per CoT", "cost",
        lambda rec: [float(len(rec.traces["subject"].steps))] if rec.traces["subject"].steps else None,
        kind="mean", percent=False, compare=False, bounds=(0.0, float("inf")), about="Chunks (lines, then sentences) of the subject's CoT.",
    )
)
register_metric(
    Metric(
        "cost/wall_s", "wall time per question (s, geometric mean)", "cost", lambda rec: [rec.wall_s], kind="gmean", percent=False, complete_only=False, bounds=(0.0, float("inf")),
        about="The batch's wall time over its size: depends on the machine, not reproducible.",
    )
)
register_metric(
    Metric(
        "cost/cot_cut", "CoTs cut off by their token budget", "cost",
        lambda rec: [float(rec.traces["subject"].cut)] if rec.traces["subject"].steps or rec.traces["subject"].cut else None,
        complete_only=False, compare=True,
        about="CoTs that ended on max_new_tokens; every faithfulness metric leaves them out.",
    )
)
register_metric(
    Metric(
        "cost/continuations_cut", "continuations cut off by their token budget", "cost",
        lambda rec: [float(c.finish_reason == "length") for c in _continuations(rec)], compare=False,
        about="Continuations from a truncated or corrupted CoT that ended on continue_max_new_tokens.",
    )
)

register_metric(
    Metric(
        "cost/tool_calls", "tool calls per question", "cost",
        lambda rec: [float(m["tool_calls"])] if "tool_calls" in (m := rec.traces["subject"].meta) else None,
        kind="mean", percent=False, complete_only=False, bounds=(0.0, float("inf")),
        about="Calls an agent made (systems with tools only); malformed calls are not counted.",
    )
)
register_metric(
    Metric(
        "cost/tool_errors", "tool calls that failed", "cost",
        lambda rec: [1.0] * int(m["tool_errors"]) + [0.0] * (int(m["tool_calls"]) - int(m["tool_errors"]))
        if int((m := rec.traces["subject"].meta).get("tool_calls", 0)) else None,
        complete_only=False, compare=False,
        about="Unknown tools, refused inputs and tools that raised, per call; resampled by sample.",
    )
)


def _continuations(rec):
    """Every continuation stored in a record, whatever experiment made it."""
    out = []
    for results in rec.results.values():
        for r in results:
            c = getattr(r, "continued", None)
            if c is not None and hasattr(c, "finish_reason"):
                out.append(c)
    return out
