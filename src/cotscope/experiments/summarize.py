"""Early answering on chunk-aligned summaries: a summarizer (the rewriter role) summarizes the
first k chunks, for every k; its k = n point is the whole-CoT substitution by the summary."""

from __future__ import annotations

from ._curves import CurveExperiment
from .base import register_experiment


@register_experiment
class Summary(CurveExperiment):
    """The curve on chunk-aligned summaries; its k = n point is the whole-CoT substitution."""

    name = "summary"
    title = "Early answering on the summarized CoT"
    source = "summary"
