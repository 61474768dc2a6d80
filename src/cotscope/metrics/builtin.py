"""Metrics of every audit, whatever experiments run: accuracy, the CoT's gain, its cost."""

from __future__ import annotations

from .base import Metric, register_metric


def _correct(role: str):
    return lambda rec: [float(rec.correct[role])] if role in rec.correct else None


register_metric(Metric("accuracy/subject", "{system}", "accuracy", _correct("subject"), about="Graded final answer of the system under audit."))
register_metric(Metric("accuracy/baseline", "{baseline}", "accuracy", _correct("baseline"), about="The baseline system on the same samples."))
register_metric(
    Metric(
        "accuracy/cot_gain", "CoT gain ({system} - {baseline})", "accuracy",
        lambda rec: [(rec.correct["subject"], rec.correct["baseline"])] if {"subject", "baseline"} <= rec.correct.keys() else None,
        kind="paired", compare=False, about="Subject minus baseline accuracy, paired over samples.",
    )
)
register_metric(
    Metric(
        "cost/tokens", "tokens generated per question", "cost",
        lambda rec: [float(rec.traces["subject"].n_generated_tokens)], kind="mean", percent=False,
        about="Every token the system generated for its trace, all roles together.",
    )
)
register_metric(
    Metric(
        "cost/cot_steps", "chunks per CoT", "cost",
        lambda rec: [float(len(rec.traces["subject"].steps))] if rec.traces["subject"].steps else None,
        kind="mean", percent=False, compare=False, about="Chunks (lines, then sentences) of the subject's CoT.",
    )
)
register_metric(
    Metric(
        "cost/wall_s", "wall time per question (s)", "cost", lambda rec: [rec.wall_s], kind="mean", percent=False,
        about="The batch's wall time over its size: depends on the machine, not reproducible.",
    )
)
