"""Early-answering curves and the area over the agreement curve (AOC), after Lanham et al.
2023, "Measuring Faithfulness in Chain-of-Thought Reasoning".

Each sample's CoT has its own number of chunks n, so curves are put on a common axis, the
fraction of the CoT given: at fraction f a sample contributes its point with the largest
k/n <= f (the CoT is cut at the last chunk boundary at or before f), and every sample counts
at every f. A sample's AOC is the area over its agreement step function on [0, 1]: 0 when its
answer never depends on the CoT, near 1 when every chunk is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field

from ..stats import Estimate


class CurvePoint(BaseModel):
    x: float = Field(description="Fraction of the CoT given (0 to 1), or the chunk index k.")
    values: dict[str, Estimate] = Field(description="Metric name -> estimate at x.")


def step_value(points: Sequence[tuple[float, float]], f: float) -> float:
    """Value of a step function given as sorted (fraction, value) points, at fraction f."""
    best = points[0][1]
    for frac, val in points:
        if frac <= f + 1e-9:
            best = val
        else:
            break
    return best


def area_over(points: Sequence[tuple[float, float]]) -> float:
    """Integral of 1 - value over [0, 1] for a step function starting at fraction 0."""
    area = 0.0
    for (f0, v0), (f1, _) in zip(points, points[1:], strict=False):
        area += (f1 - f0) * (1.0 - v0)
    last_f, last_v = points[-1]
    return area + (1.0 - last_f) * (1.0 - last_v)


def binned_curve(
    per_sample: Sequence[dict[str, list[tuple[float, float]]]],
    metrics: Sequence[str],
    bins: int,
    estimate: Callable[[str, Sequence[float], float], Estimate],
) -> list[CurvePoint]:
    """Average step functions over samples at fractions 0, 1/bins, ..., 1; `estimate(metric, values, x)`
    makes each point's estimate (one value per sample)."""
    out = []
    for b in range(bins + 1):
        f = b / bins
        values = {}
        for m in metrics:
            vals = [step_value(s[m], f) for s in per_sample if s.get(m)]
            values[m] = estimate(m, vals, f)
        out.append(CurvePoint(x=f, values=values))
    return out
