"""Interventions on a trace's steps, and the generic re-ask loop."""

from .base import make_intervention, reask, register_intervention
from .rewriter import Rewriter

__all__ = ["Rewriter", "make_intervention", "reask", "register_intervention"]
