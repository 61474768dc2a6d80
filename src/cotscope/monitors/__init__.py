"""Monitors: a monitor reads a trace (its CoT, its answer, or both) and returns a suspicion
score in [0, 1] with the quote it rests on; `measure` scores monitors against labelled traces
(TPR, FPR, g-mean², AUROC, each with n and an interval)."""

from .base import MONITORS, LabelledTrace, Monitor, MonitorVerdict, get_monitor, register_monitor, visible_text
from .measure import MonitorReport, Rates, hint_switches, load_labelled, measure, monitor

__all__ = [
    "MONITORS", "LabelledTrace", "Monitor", "MonitorReport", "MonitorVerdict", "Rates", "get_monitor", "hint_switches", "load_labelled",
    "measure", "monitor",
    "register_monitor", "visible_text",
]
