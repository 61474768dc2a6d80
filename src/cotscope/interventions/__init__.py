"""Interventions on a trace's steps, and the generic re-ask loop."""

from .base import make_intervention, reask, register_intervention

__all__ = ["make_intervention", "reask", "register_intervention"]
