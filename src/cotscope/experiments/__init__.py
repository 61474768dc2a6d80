"""Experiments run by the audit; each fills its part of the sample records."""

from . import hints, mistakes, substitution, truncation  # noqa: F401 - registration
from .base import EXPERIMENTS, Context, register_experiment

__all__ = ["EXPERIMENTS", "Context", "register_experiment"]
