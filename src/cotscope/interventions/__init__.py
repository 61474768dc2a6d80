"""Interventions on a trace's steps, and the generic re-ask loop."""

from . import edits  # noqa: F401 - registration
from .base import make_intervention, reask, register_intervention

__all__ = ["make_intervention", "reask", "register_intervention"]
