"""Estimates with bootstrap confidence intervals. Every reported number is one of these."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field


class Estimate(BaseModel):
    """A statistic with its sample size and a percentile-bootstrap confidence interval."""

    value: float | None = Field(description="Point estimate (the mean); None when n is 0.")
    lo: float | None = Field(description="Lower end of the confidence interval.")
    hi: float | None = Field(description="Upper end of the confidence interval.")
    n: int = Field(description="Number of samples the estimate rests on.")
    level: float = Field(default=0.95, description="Confidence level of [lo, hi].")


def bootstrap_mean(values: Sequence[float], *, seed: int = 0, n_boot: int = 2000, level: float = 0.95) -> Estimate:
    """Mean of `values` with a percentile-bootstrap CI, resampling with a seeded generator."""
    x = np.asarray([float(v) for v in values], dtype=float)
    n = int(x.size)
    if n == 0:
        return Estimate(value=None, lo=None, hi=None, n=0, level=level)
    mean = float(x.mean())
    if n == 1 or np.all(x == x[0]):
        return Estimate(value=mean, lo=mean, hi=mean, n=n, level=level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Estimate(value=mean, lo=float(lo), hi=float(hi), n=n, level=level)


def paired_difference(a: Sequence[float], b: Sequence[float], **kwargs) -> Estimate:
    """Mean of a - b over paired samples, with a bootstrap CI over the pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return bootstrap_mean([float(x) - float(y) for x, y in zip(a, b, strict=True)], **kwargs)
