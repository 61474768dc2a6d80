"""Early answering (Lanham et al. 2023): the system's own CoT cut after k chunks, for every k;
an answer forced right there, and the system left to reason on from the prefix."""

from __future__ import annotations

from ._curves import CurveExperiment
from .base import register_experiment


@register_experiment
class Truncate(CurveExperiment):
    """Early answering on the system's own CoT."""

    name = "truncate"
    title = "Early answering: the CoT cut after k chunks"
    source = "original"
    inspect_task = "early_answering"
    headline = ('truncate/aoc', 'truncate/aoc_continued')
