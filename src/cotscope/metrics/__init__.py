"""Metrics: estimates with confidence intervals, and faithfulness measures."""

from .stats import Estimate, bootstrap_mean, paired_difference

__all__ = ["Estimate", "bootstrap_mean", "paired_difference"]
