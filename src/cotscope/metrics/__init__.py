"""Metrics: registered functions from sample records to estimates with n and a CI."""

from . import builtin  # noqa: F401 - registration
from .base import METRICS, Metric, aggregate, load_metrics, register_metric

__all__ = ["METRICS", "Metric", "aggregate", "load_metrics", "register_metric"]
