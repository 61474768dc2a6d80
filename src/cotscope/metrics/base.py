"""A metric is one registered function from sample records to an estimate with n and a CI.

A metric says what it observes in one sample (`items`: none, one or several numbers) and what
kind of number that is; the interval method follows from the kind (see `cotscope.stats`):

- ``rate``: values in [0, 1]; one per sample -> Clopper-Pearson, several -> clustered by sample;
- ``mean``: unbounded values; one per sample -> t, several -> cluster-robust t;
- ``gmean``: a cost or a time, positive and skewed; one per sample -> the geometric mean with t
  on the logs (``t-log``), where t on the arithmetic mean undercovers; any value <= 0, or several
  per sample -> as ``mean``;
- ``paired``: one (a, b) pair of 0/1 outcomes per sample -> Newcombe's paired interval on a - b.

Experiments declare their metrics beside their results; metrics that belong to no experiment
(accuracy, tokens) are registered with `register_metric`. The summary, `compare` and the
verdicts all read metrics from here, so each number is computed in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .. import stats
from .._errors import CotscopeError
from .._registry import Registry, load_object
from ..records import SampleRecord
from ..stats import Estimate

Kind = Literal["rate", "mean", "gmean", "paired"]
Items = Callable[[SampleRecord], Sequence[Any] | None]


@dataclass(frozen=True)
class Metric:
    """One number an audit reports.

    Attributes:
        name: Stable id, ``<experiment>/<metric>`` for an experiment's metrics.
        label: What the number is, as the table shows it (``{system}`` and ``{baseline}`` are filled in).
        group: The table's row group.
        items: A sample's observations (None or empty: the sample does not count).
        kind: ``rate``, ``mean``, ``gmean`` or ``paired`` (see the module docstring).
        percent: Shown in percent.
        compare: Shown by ``cotscope compare``.
        roles: Model roles the metric needs (a judge, a reference model); their items are
            computed while the audit runs and stored with the record.
        about: What the metric can and cannot see.
        bounds: The range the value cannot leave (a mean of differences of rates: -1 to 1); the
            interval is clipped to it, which never lowers its coverage.
        complete_only: Leave out samples whose CoT was cut off by its token budget (true for
            every faithfulness metric: a cut CoT is not the CoT the system would have written).
    """

    name: str
    label: str
    group: str
    items: Items
    kind: Kind = "rate"
    percent: bool = True
    compare: bool = True
    roles: tuple[str, ...] = ()
    about: str = ""
    complete_only: bool = True
    bounds: tuple[float, float] | None = None

    def clusters(self, records: Sequence[SampleRecord]) -> list[list[Any]]:
        """Each measured sample's observations, in record order (unmeasured samples left out)."""
        out = []
        for rec in records:
            if self.complete_only and "subject" in rec.traces and rec.traces["subject"].left_out:
                continue
            got = self.items(rec)
            if got is not None and len(got):
                out.append(list(got))
        return out

    def estimate(self, records: Sequence[SampleRecord], level: float = stats.LEVEL) -> Estimate:
        """The metric over records, with the interval method its kind calls for, at `level`."""
        e = aggregate(self.clusters(records), self.kind, level)
        if self.bounds is not None and e.value is not None:
            e = e.model_copy(update={"lo": max(e.lo, self.bounds[0]), "hi": min(e.hi, self.bounds[1])})
        return e

    def per_sample(self, rec: SampleRecord) -> float | None:
        """One number per sample (the mean of its items; a - b for a pair), for paired comparisons."""
        if self.complete_only and "subject" in rec.traces and rec.traces["subject"].left_out:
            return None
        got = self.items(rec)
        if got is None or not len(got):
            return None
        if self.kind == "paired":
            return sum(float(a) - float(b) for a, b in got) / len(got)
        return sum(float(x) for x in got) / len(got)


def aggregate(clusters: Sequence[Sequence[Any]], kind: Kind, level: float = stats.LEVEL) -> Estimate:
    """An estimate from per-sample observations."""
    if kind == "paired":
        pairs = [p for c in clusters for p in c]
        return stats.paired_rate_difference([a for a, _ in pairs], [b for _, b in pairs], level)
    nested = any(len(c) > 1 for c in clusters)
    if kind == "rate":
        return stats.clustered_rate(clusters, level) if nested else stats.rate([c[0] for c in clusters], level)
    if nested:
        return stats.clustered_mean(clusters, level)
    values = [float(c[0]) for c in clusters]
    return stats.typical_cost(values, level) if kind == "gmean" else stats.mean(values, level)


def paired(metric: Metric, pairs: Sequence[tuple[float, float]], level: float = stats.LEVEL) -> Estimate | None:
    """One metric's (a, b) values on the same samples, compared: a minus b with Newcombe's
    paired interval for 0/1 outcomes; for a cost or a time (kind ``gmean``, every value
    positive) a over b, the geometric mean of the per-sample ratios with t on their logs
    (``t-log``: a difference of skewed costs is no safer under t than the costs); a minus b with
    t otherwise. None without a pair."""
    if not pairs:
        return None
    if metric.kind == "rate" and all(v in (0.0, 1.0) for p in pairs for v in p):
        return stats.paired_rate_difference([a for a, _ in pairs], [b for _, b in pairs], level)
    if metric.kind == "gmean" and all(a > 0 and b > 0 for a, b in pairs):
        return stats.geometric_mean([a / b for a, b in pairs], level)
    return stats.mean([a - b for a, b in pairs], level)


METRICS = Registry("metric", group="cotscope.metrics")


def register_metric(metric: Metric) -> Metric:
    """Add a metric that belongs to no experiment (it is reported in every audit)."""
    METRICS[metric.name] = metric
    return metric


def load_metrics(paths: Sequence[str]) -> list[Metric]:
    """Metrics named by import path (``package.module:name``): a `Metric`, or a list of them.

    Raises:
        CotscopeError: for a bad path or an object that is no metric.
    """
    out: list[Metric] = []
    for path in paths:
        obj = METRICS[path] if path in METRICS else load_object(path, "metric")
        got = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        for m in got:
            if not isinstance(m, Metric):
                raise CotscopeError(f"metric {path!r} is {type(m).__name__}, not a cotscope Metric")
        out.extend(got)
    return out
