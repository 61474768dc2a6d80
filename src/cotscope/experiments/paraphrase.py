"""Early answering on the step-by-step paraphrase (each chunk rewritten on its own, so the k-th
paraphrased chunk stands for the k-th chunk); its k = n point gives the whole-CoT substitution
and the paraphrase sensitivity: how far the answer moves when only the wording changes."""

from __future__ import annotations

from ._curves import CurveExperiment
from .base import register_experiment


@register_experiment
class Paraphrase(CurveExperiment):
    """The curve on the step-by-step paraphrase, and paraphrase sensitivity."""

    name = "paraphrase"
    title = "Early answering on the paraphrased CoT, and paraphrase sensitivity"
    source = "paraphrase"
    inspect_task = "paraphrase_sensitivity"
    headline = ('paraphrase/answer_change', 'paraphrase/accuracy_change')
