"""Estimates with confidence intervals, each made by a method chosen for its kind of number.

Every number cotscope reports is an `Estimate`: a point value, its sample size n and a 95%
interval, tagged with the method that made it. The methods, and what they are for:

==================  ======================================================================
method              used for
==================  ======================================================================
clopper-pearson     a rate over samples, one 0/1 (or [0, 1]) value each: accuracy,
                    agreement, answer changes. Exact binomial (beta quantiles); never
                    zero-width, 0 of 8 gives [0, 0.37].
clustered           a rate over items nested in samples (corrupted steps, truncation
                    points, hints): the pooled rate, with a Clopper-Pearson interval whose
                    n is Kish's effective number of samples, (sum m)^2 / sum m^2 for samples
                    of m items: the worst-case design effect, items of one sample perfectly
                    correlated. Equal sizes give n = samples; a few large samples among many
                    small ones weigh as what they are, a few samples.
paired-newcombe     a difference of two paired rates (CoT gain, accuracy change): Newcombe
                    (1998) hybrid score interval with continuity correction (his method 11).
t                   an unbounded mean (tokens, KL): Student's t; when every value is the
                    same, the spread is floored at half a unit of the data's resolution.
t-log               a typical cost, time or ratio (tokens, seconds, token ratios): the geometric
                    mean, Student's t on the logs. Exact for lognormal data; t on the
                    arithmetic mean covered 79-90% there (n = 5-100). Needs every value > 0.
t-clustered         an unbounded mean over items nested in samples: the ratio estimator
                    with a cluster jackknife variance (each sample's residual inflated by
                    its leverage, CR3), t with Kish's effective samples - 1 df.
exact               a quantity fixed by definition (nothing is continued after the whole
                    CoT), never one that a sample happened to hold constant.
gmean-jeffreys      a monitor's TPR x TNR: the percentile interval under both rates'
                    Jeffreys posteriors (Beta(k + 1/2, n - k + 1/2)), tails at level + 1%.
kappa-weighted      linear-weighted Cohen's kappa of two judges' grades (0-4): the jackknife
                    over items, Student's t on n - 1 df, tails at level + 2%.
ac2-jackknife       Gwet's AC2 of the same grades (robust when one grade dominates), the same way.
spearman-fisher     Spearman's rank correlation (a judge's grades against a legibility signal):
                    Fisher's z with Bonett and Wright's variance (1 + r^2 / 2) / (n - 3).
kappa-union         Cohen's kappa of two monitors: the union of the Jeffreys-Dirichlet
                    posterior percentile interval and the Fleiss-Cohen-Everitt delta method
                    on the table with 1/2 added per cell (t, n - 1 df).
==================  ======================================================================

`tests/test_coverage.py` simulates data with known truth, including samples of very uneven
sizes (15% of samples with 20 items, the rest with 1, within-sample correlation 0 to 1), and
checks that each method covers it at least 93% of the time at the 95% level, and for most
(docs/statistics.md lists which) that the mean width is at most 1.4x the normal-theory width at
the true value and, for one not conservative by design, that it covers at most 99.5%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

Method = Literal["clopper-pearson", "clustered", "paired-newcombe", "newcombe", "t", "t-log", "t-clustered", "exact", "bsc-bonferroni",
                 "gmean-jeffreys", "gmean-clustered", "auroc-wilson", "auroc-clustered", "kappa-union", "kappa-clustered",
                 "kappa-weighted", "ac2-jackknife", "spearman-fisher"]
METHODS: tuple[str, ...] = (
    "clopper-pearson", "clustered", "paired-newcombe", "newcombe", "t", "t-log", "t-clustered", "exact", "bsc-bonferroni",
    "gmean-jeffreys", "gmean-clustered", "auroc-wilson", "auroc-clustered", "kappa-union", "kappa-clustered",
    "kappa-weighted", "ac2-jackknife", "spearman-fisher",
)
LEVEL = 0.95
_DRAWS = 4000  # posterior draws of the simulation-based intervals (gmean-jeffreys, kappa-union), seeded


class Estimate(BaseModel):
    """A statistic with its sample size and a confidence interval, and the method behind it."""

    value: float | None = Field(description="Point estimate (the mean, or the pooled rate); None when n is 0.")
    lo: float | None = Field(description="Lower end of the confidence interval.")
    hi: float | None = Field(description="Upper end of the confidence interval.")
    n: int = Field(description="Number of samples the estimate rests on (clusters, not items).")
    level: float = Field(default=LEVEL, description="Confidence level of [lo, hi].")
    method: str = Field(default="clopper-pearson", description="How the interval was made (see cotscope.stats).")
    n_items: int | None = Field(default=None, description="Items pooled, when several come from one sample.")


def _empty(method: str) -> Estimate:
    return Estimate(value=None, lo=None, hi=None, n=0, method=method)


def _beta_ppf(q: float, a: float, b: float) -> float:
    from scipy.stats import beta

    return float(beta.ppf(q, a, b))


def clopper_pearson(successes: float, n: float, level: float = LEVEL) -> tuple[float, float]:
    """Exact binomial interval; `successes` and `n` may be fractional (a mean of [0, 1] values
    times n; an effective sample size)."""
    alpha = 1 - level
    k = min(max(successes, 0.0), float(n))
    lo = 0.0 if k <= 1e-12 else _beta_ppf(alpha / 2, k, n - k + 1)
    hi = 1.0 if k >= n - 1e-12 else _beta_ppf(1 - alpha / 2, k + 1, n - k)
    return lo, hi


def rate(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """A rate over samples, one value in [0, 1] each (Clopper-Pearson)."""
    x = np.asarray([float(v) for v in values], dtype=float)
    if x.size == 0:
        return _empty("clopper-pearson")
    _check_unit(x)
    lo, hi = clopper_pearson(float(x.sum()), int(x.size), level)
    return Estimate(value=float(x.mean()), lo=lo, hi=hi, n=int(x.size), level=level, method="clopper-pearson")


def effective_samples(sizes: Sequence[float]) -> float:
    """Kish's effective sample size of a mean weighted by `sizes`: (sum m)^2 / sum m^2.

    The pooled rate of items nested in samples weighs each sample by its item count; when the
    items of a sample are perfectly correlated its variance is that of a mean of this many
    independent samples. Equal sizes give the number of samples."""
    m = np.asarray(sizes, dtype=float)
    return float(m.sum() ** 2 / (m**2).sum()) if m.size and m.sum() > 0 else 0.0


def clustered_rate(clusters: Sequence[Sequence[float]], level: float = LEVEL) -> Estimate:
    """The pooled rate of items nested in samples, with a Clopper-Pearson interval at Kish's
    effective number of samples (see `effective_samples`); `n` is the number of samples."""
    groups = [[float(v) for v in c] for c in clusters if len(c)]
    if not groups:
        return _empty("clustered")
    items = np.asarray([v for g in groups for v in g], dtype=float)
    _check_unit(items)
    p = float(items.mean())
    n_eff = effective_samples([len(g) for g in groups])
    lo, hi = clopper_pearson(p * n_eff, n_eff, level)
    return Estimate(value=p, lo=lo, hi=hi, n=len(groups), level=level, method="clustered", n_items=int(items.size))


def _wilson_cc(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval with continuity correction (Newcombe 1998, method 4)."""
    p = k / n
    lo = 0.0 if k == 0 else (2 * n * p + z * z - 1 - z * math.sqrt(z * z - 2 - 1 / n + 4 * p * (n * (1 - p) + 1))) / (2 * (n + z * z))
    hi = 1.0 if k == n else (2 * n * p + z * z + 1 + z * math.sqrt(z * z + 2 - 1 / n + 4 * p * (n * (1 - p) - 1))) / (2 * (n + z * z))
    return max(0.0, lo), min(1.0, hi)


def paired_rate_difference(a: Sequence[bool | float], b: Sequence[bool | float], level: float = LEVEL) -> Estimate:
    """Mean of a - b over paired 0/1 outcomes: Newcombe's hybrid score interval (method 11)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return _empty("paired-newcombe")
    x = [bool(round(float(v))) for v in a]
    y = [bool(round(float(v))) for v in b]
    if any(float(v) not in (0.0, 1.0) for v in list(a) + list(b)):
        raise ValueError("paired_rate_difference needs 0/1 outcomes")
    z = _z(level)
    both = sum(p and q for p, q in zip(x, y, strict=True))
    only_a = sum(p and not q for p, q in zip(x, y, strict=True))
    only_b = sum(q and not p for p, q in zip(x, y, strict=True))
    neither = n - both - only_a - only_b
    ka, kb = both + only_a, both + only_b
    p1, p2 = ka / n, kb / n
    l1, u1 = _wilson_cc(ka, n, z)
    l2, u2 = _wilson_cc(kb, n, z)
    denom = (both + only_a) * (neither + only_b) * (both + only_b) * (neither + only_a)
    if denom == 0:
        phi = 0.0
    else:
        num = both * neither - only_a * only_b
        # Newcombe's corrected phi: a positive association is shrunk by n/2, never below 0.
        num = num - n / 2 if num > n / 2 else (num if num < 0 else 0.0)
        phi = num / math.sqrt(denom)
    d = p1 - p2
    dl = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    du = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return Estimate(value=d, lo=max(-1.0, d - dl), hi=min(1.0, d + du), n=n, level=level, method="paired-newcombe")


def rate_difference(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> Estimate:
    """k1/n1 - k2/n2 for two independent samples of 0/1 outcomes: Newcombe's hybrid score
    interval (method 10, from continuity-corrected Wilson limits); `n` is n1 + n2."""
    if n1 <= 0 or n2 <= 0:
        return _empty("newcombe")
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"counts out of range: {k1}/{n1}, {k2}/{n2}")
    z = _z(level)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson_cc(k1, n1, z)
    l2, u2 = _wilson_cc(k2, n2, z)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Estimate(value=d, lo=max(-1.0, lo), hi=min(1.0, hi), n=n1 + n2, level=level, method="newcombe")


def g_mean_squared(tp: int, n_pos: int, tn: int, n_neg: int, level: float = LEVEL) -> Estimate:
    """TPR x TNR (a monitor's g-mean², as in OpenAI's monitorability evals): the percentile
    interval of TPR x TNR under each rate's Jeffreys posterior, Beta(k + 1/2, n - k + 1/2),
    independent, from 4,000 seeded draws (the same counts give the same interval). As the
    Jeffreys interval does, a rate of 0 of n has lower limit 0 and one of n of n upper limit 1.
    Its tails are taken at `level` + 1/100 (2% and 98% at 95%): at 95% exactly the product
    covered 92.7% on two of 20 cells of `test_coverage.py`, at 96% every cell 93% or more. It
    replaced a product of Bonferroni Clopper-Pearson limits that covered 98.5-100% at about 1.5x
    this width. Defined, never NaN, for any counts with n_pos and n_neg above 0; `n` is n_pos + n_neg."""
    if n_pos <= 0 or n_neg <= 0:
        return _empty("gmean-jeffreys")
    rng = np.random.default_rng(0)
    a = rng.beta(tp + 0.5, n_pos - tp + 0.5, _DRAWS)
    b = rng.beta(tn + 0.5, n_neg - tn + 0.5, _DRAWS)
    tail = (1 - min(level + 0.01, 0.999)) / 2
    lo = float(np.quantile((0.0 if tp == 0 else a) * (0.0 if tn == 0 else b), tail))
    hi = float(np.quantile((1.0 if tp == n_pos else a) * (1.0 if tn == n_neg else b), 1 - tail))
    return Estimate(value=(tp / n_pos) * (tn / n_neg), lo=lo, hi=hi, n=n_pos + n_neg, level=level, method="gmean-jeffreys")


def g_mean_squared_clustered(pos: Sequence[Sequence[float]], neg: Sequence[Sequence[float]], level: float = LEVEL) -> Estimate:
    """TPR x TNR from 0/1 flags nested in clusters (the positives and the negatives of each
    sample or pair): the product of `clustered_rate` limits of each rate at level 1 - alpha/2
    (Bonferroni, as `g_mean_squared`); `n` is the number of clusters holding either."""
    p = [list(c) for c in pos if len(c)]
    q = [[1.0 - float(v) for v in c] for c in neg if len(c)]
    if not p or not q:
        return _empty("gmean-clustered")
    half = 1 - (1 - level) / 2
    tpr, tnr = clustered_rate(p, half), clustered_rate(q, half)
    return Estimate(value=tpr.value * tnr.value, lo=tpr.lo * tnr.lo, hi=tpr.hi * tnr.hi, n=len(p) + len(q), level=level,
                    method="gmean-clustered", n_items=tpr.n_items + tnr.n_items)


def _kappa_table(t: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    """kappa, pe, cell shares, row and column margins of a 2x2 table of counts (or of draws of
    shares, leading axes kept)."""
    p = t / t.sum(axis=(-2, -1), keepdims=True)
    r, c = p.sum(-1), p.sum(-2)
    po, pe = p[..., 0, 0] + p[..., 1, 1], (r * c).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (po - pe) / (1 - pe), pe, p, r, c


def _ordinal_coefficients(table: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(linear-weighted kappa, Gwet's AC2) of a table of counts; nan where undefined."""
    t = table / table.sum()
    q = t.shape[0]
    pa = float((weights * t).sum())
    ra, rb = t.sum(1), t.sum(0)
    pk = float((weights * np.outer(ra, rb)).sum())
    pi = (ra + rb) / 2
    pg = float(weights.sum() / (q * (q - 1)) * (pi * (1 - pi)).sum())
    kappa = (pa - pk) / (1 - pk) if pk < 1 - 1e-12 else math.nan
    ac2 = (pa - pg) / (1 - pg) if pg < 1 - 1e-12 else math.nan
    return kappa, ac2


def ordinal_agreement(a: Sequence[int], b: Sequence[int], categories: int, level: float = LEVEL) -> tuple[Estimate, Estimate]:
    """Two judges' grades 0..categories-1 on the same items: the linear-weighted Cohen's kappa
    and Gwet's AC2 (weights 1 - |k - l| / (categories - 1)). Kappa takes its chance agreement
    from the two judges' marginals, so when one grade dominates it can be low, even negative,
    while the judges mostly agree; AC2 takes it from how spread the grades are, and holds there.

    The interval of each is the jackknife over items (leave one out; only one distinct value per
    occupied cell of the table, so it is cheap), with Student's t on n - 1 df and tails at level
    + 2% (at the plain level AC2 covered 90.7% with 10 items). In `test_coverage.py` (grades cut
    from a latent bivariate normal, even and skewed grade shares, correlation 0 to 0.9): AC2 covers
    every cell; weighted kappa covers at 30 and 100 items, and at 10 with even grade shares, but
    0.91 at 10 items where one grade dominates (read AC2 there). A coefficient that is undefined
    (every grade the same by both judges, for kappa) has no value."""
    if len(a) != len(b):
        raise ValueError(f"paired grades differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return _empty("kappa-weighted"), _empty("ac2-jackknife")
    x, y = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    if x.min() < 0 or y.min() < 0 or x.max() >= categories or y.max() >= categories:
        raise ValueError(f"grades must be 0..{categories - 1}")
    weights = 1 - np.abs(np.subtract.outer(np.arange(categories), np.arange(categories))) / (categories - 1)
    table = np.zeros((categories, categories))
    np.add.at(table, (x, y), 1)
    full = _ordinal_coefficients(table, weights)
    loo = []  # per occupied cell: the coefficients without one of its items, and how many items it holds
    for i, j in zip(*np.nonzero(table), strict=True) if n > 1 else ():
        t = table.copy()
        t[i, j] -= 1
        loo.append((_ordinal_coefficients(t, weights), table[i, j]))
    out = []
    for k, method in enumerate(("kappa-weighted", "ac2-jackknife")):
        value = full[k]
        if math.isnan(value):
            out.append(Estimate(value=None, lo=None, hi=None, n=n, level=level, method=method))
            continue
        vals = np.array([c[k] for c, _ in loo])
        wts = np.array([m for _, m in loo])
        ok = ~np.isnan(vals)
        if not ok.any():  # one item, or no item whose leaving keeps the coefficient defined
            se = 1.0
        else:
            mean = float((vals[ok] * wts[ok]).sum() / wts[ok].sum())
            se = math.sqrt((n - 1) / n * float((wts[ok] * (vals[ok] - mean) ** 2).sum()))
        half = _t(min(level + 0.02, 0.999), max(n - 1, 1)) * max(se, 1 / n)
        out.append(Estimate(value=value, lo=max(value - half, -1.0), hi=min(value + half, 1.0), n=n, level=level, method=method))
    return out[0], out[1]


def spearman(x: Sequence[float], y: Sequence[float], level: float = LEVEL) -> Estimate:
    """Spearman's rank correlation of paired values (ties take their mean rank), with Fisher's z
    interval and Bonett and Wright's (2000) variance, (1 + r^2 / 2) / (n - 3). A perfect ranking
    (r = 1 or -1), where that interval has no width, is taken at 1 - 1/(2n) on the z scale, and its
    interval reaches 1. None below 4 pairs or when either side is constant."""
    from scipy.stats import spearmanr

    if len(x) != len(y):
        raise ValueError(f"paired values differ in length: {len(x)} vs {len(y)}")
    n = len(x)
    if n < 4 or len(set(x)) < 2 or len(set(y)) < 2:
        return Estimate(value=None, lo=None, hi=None, n=n, level=level, method="spearman-fisher")
    r = round(float(spearmanr(x, y).statistic), 12)
    edge = 1 - 1 / (2 * n)  # a perfect ranking is read as this close to 1 on the z scale, and the interval then reaches 1
    rz = max(min(r, edge), -edge)
    z = math.atanh(rz)
    half = _z(level) * math.sqrt((1 + rz * rz / 2) / (n - 3))
    return Estimate(value=r, lo=min(math.tanh(z - half), r), hi=max(math.tanh(z + half), r), n=n, level=level, method="spearman-fisher")


def cohen_kappa(a: Sequence[bool | float], b: Sequence[bool | float], level: float = LEVEL, clusters: Sequence[str] | None = None) -> Estimate:
    """Cohen's kappa of two raters' 0/1 calls on the same items, (po - pe) / (1 - pe), where po
    is the share of items they agree on and pe = pa pb + (1 - pa)(1 - pb) the agreement their
    flag rates give by chance. The value is None when pe is 1 (both raters give one and the same
    call to every item: kappa is undefined).

    The interval is the union of two (conservative by design): the percentile interval of kappa
    under the Jeffreys posterior of the 2x2 table's shares, Dirichlet(counts + 1/2), from 4,000
    seeded draws; and Fleiss, Cohen and Everitt's (1969) large-sample variance, taken on the
    table with 1/2 added to each cell (so that a table with an empty cell has a width), around
    the estimate, with t on n - 1 degrees of freedom. The posterior holds where flags are rare
    and kappa's spread is skewed, where the delta method undercovered (80% at rare flags); the
    delta method holds at n = 10, where the posterior alone covered 92%. Together they covered
    94.5-99.8% on every cell of `test_coverage.py` at 1.0-1.2x the normal-theory width at the
    true value; the Bonferroni interval they replaced covered 99.5-100% at up to 2.6x it (1.8-2.0
    wide of a possible 2 at n = 10). The upper limit is 1 when the raters agree on every item.

    With `clusters` (the unit each item belongs to: its sample), the table's counts are scaled to
    Kish's effective number of units, (sum m)^2 / sum m^2, before both intervals are taken: the
    worst case, every item of a unit the same, as `clustered` assumes for a rate (method
    ``kappa-clustered``; `n` counts units, `n_items` items)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    method = "kappa-union" if clusters is None else "kappa-clustered"
    if n == 0:
        return _empty(method)
    if any(float(v) not in (0.0, 1.0) for v in list(a) + list(b)):
        raise ValueError("cohen_kappa needs 0/1 calls")
    x, y = np.array([float(v) == 1.0 for v in a]), np.array([float(v) == 1.0 for v in b])
    t = np.array([[np.sum(x & y), np.sum(x & ~y)], [np.sum(~x & y), np.sum(~x & ~y)]], dtype=float)
    k, pe = (float(v) for v in _kappa_table(t)[:2])
    n_units = n
    if clusters is not None:
        if len(clusters) != n:
            raise ValueError(f"{n} items but {len(clusters)} cluster labels")
        sizes: dict[str, int] = {}
        for c in clusters:
            sizes[c] = sizes.get(c, 0) + 1
        n_units = len(sizes)
        n_eff = effective_samples(list(sizes.values()))
        t = t * (n_eff / n)  # the same shares, at the information of n_eff independent items
        n = max(n_eff, 1.0)
    value = None if pe >= 1 else k
    # the posterior's percentiles
    draws = np.random.default_rng(0).dirichlet(t.ravel() + 0.5, size=_DRAWS).reshape(-1, 2, 2)
    kd = _kappa_table(draws)[0]
    kd = kd[np.isfinite(kd)]
    tail = (1 - level) / 2
    lo, hi = (float(np.quantile(kd, tail)), float(np.quantile(kd, 1 - tail))) if kd.size else (-1.0, 1.0)
    # the delta method on the smoothed table, around the estimate
    ks, pes, p, r, c = _kappa_table(t + 0.5)
    ks, pes = float(ks), float(pes)
    var_a = sum(p[i, i] * (1 - (r[i] + c[i]) * (1 - ks)) ** 2 for i in range(2))
    var_b = (1 - ks) ** 2 * (p[0, 1] * (c[0] + r[1]) ** 2 + p[1, 0] * (c[1] + r[0]) ** 2)
    var_c = (ks - pes * (1 - ks)) ** 2
    se = math.sqrt(max(float(var_a + var_b - var_c), 0.0) / (n * (1 - pes) ** 2))
    q = _t(level, max(n - 1, 1))
    centre = ks if value is None else value
    lo, hi = min(lo, centre - q * se), max(hi, centre + q * se)
    if t[0, 1] + t[1, 0] == 0:
        hi = 1.0
    return Estimate(value=value, lo=max(-1.0, lo), hi=min(1.0, hi), n=n_units, level=level, method=method,
                    n_items=len(a) if clusters is not None else None)


def auroc(positives: Sequence[float], negatives: Sequence[float], level: float = LEVEL,
          pos_clusters: Sequence[str] | None = None, neg_clusters: Sequence[str] | None = None) -> Estimate:
    """The area under the ROC curve (Mann-Whitney, ties count one half) with DeLong's variance,
    as a Wilson score interval on the effective number of pairs that variance implies
    (Newcombe 2006), with t on the Welch-Satterthwaite degrees of freedom of DeLong's two
    components (as the Brunner-Munzel test), at most the smaller group less one. An AUC of 0
    or 1 is moved half a pair inward first, and the variance is at least Hanley and McNeil's at
    that AUC, so a perfect split has an interval of some width, and one that says how sure that
    many traces make it (12 against 20: about [0.82, 1]).

    With `pos_clusters` and `neg_clusters` (the unit each score belongs to: its sample, its
    question pair), the variance is Obuchowski's (1997) for clustered data, the positives and
    negatives of each cluster summed before their spread is taken, at least the unclustered
    one; t's degrees of freedom are half the smaller number of clusters holding positives or
    negatives, and `n` counts clusters (method ``auroc-clustered``)."""
    x = np.asarray([float(v) for v in positives], dtype=float)
    y = np.asarray([float(v) for v in negatives], dtype=float)
    m, n = x.size, y.size
    clustered = pos_clusters is not None or neg_clusters is not None
    method = "auroc-clustered" if clustered else "auroc-wilson"
    if m == 0 or n == 0:
        return _empty(method)
    psi = (x[:, None] > y[None, :]).astype(float) + 0.5 * (x[:, None] == y[None, :])
    auc = float(psi.mean())
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    components = ((v10.var(ddof=1) / m if m > 1 else 0.0, m), (v01.var(ddof=1) / n if n > 1 else 0.0, n))  # DeLong's, with their group sizes
    var = sum(s for s, _ in components)
    a = min(max(auc, 0.5 / (m * n)), 1 - 0.5 / (m * n))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    hanley = (a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n)
    # Welch-Satterthwaite degrees of freedom of DeLong's two components (as the Brunner-Munzel
    # test takes them), at most the smaller group less one
    dof = float(max(min(m, n) - 1, 1))
    parts = [(s, k) for s, k in components if s > 0]
    if parts:
        dof = max(min(dof, sum(s for s, _ in parts) ** 2 / sum(s * s / (k - 1) for s, k in parts)), 1.0)
    var = max(var, hanley)
    n_units = m + n
    if clustered:
        pc = list(pos_clusters) if pos_clusters is not None else [f"+{i}" for i in range(m)]
        nc = list(neg_clusters) if neg_clusters is not None else [f"-{i}" for i in range(n)]
        if len(pc) != m or len(nc) != n:
            raise ValueError("one cluster per score is needed")
        units = sorted(set(pc) | set(nc))
        k = len(units)
        index = {u: i for i, u in enumerate(units)}
        s10, s01 = np.zeros(k), np.zeros(k)
        m_i, n_i = np.zeros(k), np.zeros(k)
        np.add.at(s10, [index[u] for u in pc], v10)
        np.add.at(s01, [index[u] for u in nc], v01)
        np.add.at(m_i, [index[u] for u in pc], 1.0)
        np.add.at(n_i, [index[u] for u in nc], 1.0)
        if k > 1:
            r10, r01 = s10 - m_i * auc, s01 - n_i * auc
            f = k / (k - 1)
            obu = f * ((r10**2).sum() / m**2 + (r01**2).sum() / n**2 + 2 * (r10 * r01).sum() / (m * n))
            var = max(var, float(obu))
        dof = max(min(int((m_i > 0).sum()), int((n_i > 0).sum())) // 2, 1)
        n_units = k
    z = _t(level, dof)
    k_pairs = a * (1 - a) / var  # pairs' worth of information: the n of a proportion with this variance
    centre = (a + z * z / (2 * k_pairs)) / (1 + z * z / k_pairs)
    half = z * math.sqrt(a * (1 - a) / k_pairs + z * z / (4 * k_pairs * k_pairs)) / (1 + z * z / k_pairs)
    return Estimate(value=auc, lo=max(0.0, centre - half), hi=min(1.0, centre + half), n=n_units, level=level, method=method,
                    n_items=m + n if clustered else None)


def mean(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """An unbounded mean with Student's t interval."""
    x = np.asarray([float(v) for v in values], dtype=float)
    if x.size == 0:
        return _empty("t")
    m, half = _t_interval(x, _resolution(x) / 2, level)
    return Estimate(value=m, lo=m - half, hi=m + half, n=int(x.size), level=level, method="t")


def _t_interval(x: np.ndarray, floor: float, level: float) -> tuple[float, float]:
    """The mean of `x` and Student's t half-width around it, the spread floored at `floor`."""
    n = int(x.size)
    sd = max(float(x.std(ddof=1)) if n > 1 else 0.0, floor)
    return float(x.mean()), _t(level, max(n - 1, 1)) * sd / math.sqrt(n)


def geometric_mean(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """The geometric mean of positive values (costs, times, ratios), with Student's t on their logs.

    Skewed positive data are where t on the arithmetic mean undercovers; on the log scale the
    interval is exact for lognormal data. A value <= 0 has no log: that is an error, not a
    value to drop. When every value is the same, the spread is floored at log(1 + half the data's
    resolution over the mean)."""
    x = np.asarray([float(v) for v in values], dtype=float)
    n = int(x.size)
    if n == 0:
        return _empty("t-log")
    if not np.all(x > 0):
        raise ValueError(f"a geometric mean needs values > 0; got {float(x.min())!r}")
    logs = np.log(x)
    m, half = _t_interval(logs, math.log1p(_resolution(x) / 2 / math.exp(float(logs.mean()))), level)
    half = min(half, 700.0 - abs(m))  # exp() of more than ~709 overflows
    return Estimate(value=math.exp(m), lo=math.exp(m - half), hi=math.exp(m + half), n=n, level=level, method="t-log")


def typical_cost(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """A cost or time: the geometric mean (`t-log`) when every value is > 0, else the arithmetic
    mean with t (a role that spent 0 tokens in some samples has no log)."""
    return geometric_mean(values, level) if all(float(v) > 0 for v in values) else mean(values, level)


def clustered_mean(clusters: Sequence[Sequence[float]], level: float = LEVEL) -> Estimate:
    """The pooled mean of items nested in samples: ratio estimator, cluster jackknife variance.

    A sample's residual is divided by 1 - its weight (its leverage in the pooled mean: the CR3
    or jackknife form), and t has Kish's effective samples - 1 degrees of freedom, so that a few
    large samples among many small ones do not pass for many (the plain cluster-robust form
    covered 70% at 8 samples with 15% of them 20 times larger, against 97% for this one)."""
    groups = [np.asarray([float(v) for v in c], dtype=float) for c in clusters if len(c)]
    if not groups:
        return _empty("t-clustered")
    sums = np.asarray([g.sum() for g in groups])
    sizes = np.asarray([g.size for g in groups], dtype=float)
    n = len(groups)
    r = float(sums.sum() / sizes.sum())
    w = sizes / sizes.sum()
    if n > 1:
        resid = w * (sums / sizes - r) / (1 - w)
        se = math.sqrt(float((resid**2).sum()))
    else:
        se = 0.0
    allx = np.concatenate(groups)
    se = max(se, _resolution(allx) / 2 / math.sqrt(n))
    df = max(effective_samples(sizes) - 1, 1.0)
    half = _t(level, df) * se
    return Estimate(value=r, lo=r - half, hi=r + half, n=n, level=level, method="t-clustered", n_items=int(allx.size))


def _binary_entropy(p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _bit_capacity(lo: float, hi: float) -> tuple[float, float]:
    """The range of 1 - H(p) for p in [lo, hi] (0 at p = 1/2, 1 at p = 0 or 1)."""
    ends = [1 - _binary_entropy(lo), 1 - _binary_entropy(hi)]
    low = 0.0 if lo <= 0.5 <= hi else min(ends)
    return low, max(ends)


def channel_capacity(bit_errors: Sequence[Sequence[float]], level: float = LEVEL) -> Estimate:
    """Capacity in bits of a hidden payload read through a noisy channel.

    Each payload position is read as a binary symmetric channel with error rate p_b, and the
    capacity is the sum over positions of 1 - H(p_b): a position read without error counts 1
    bit, one that a paraphraser randomizes (p_b = 1/2) counts 0.

    Args:
        bit_errors: One row per sample, one 0/1 error indicator per payload position.

    The interval rests on two families of intervals, each missing at most alpha/2 (level =
    1 - alpha):

    - a Clopper-Pearson interval of each p_b at level 1 - alpha/(2N) (Bonferroni over the N
      positions), mapped through 1 - H: the sums of their ends bound the capacity;
    - an interval of the error rate pooled over positions, clustered by sample, at level
      1 - alpha/2: because 1 - H is convex, the capacity is at least N (1 - H) of the mean
      rate, so N (1 - H) at the interval's worst point is a second lower bound.

    The upper end is the first family's; the lower end is the larger of the two lower bounds.
    The pooled bound is what lets a handful of clean reads bound the capacity away from 0
    (per position, 6 clean reads allow a bit error rate above 1/2 at level 1 - alpha/(2N)).

    A bootstrap is not used because it collapses to a point when every sample decodes.
    """
    rows = [[float(v) for v in r] for r in bit_errors]
    if not rows:
        return _empty("bsc-bonferroni")
    width = len(rows[0])
    if width == 0 or any(len(r) != width for r in rows):
        raise ValueError("channel_capacity needs one error indicator per payload position in every row")
    x = np.asarray(rows, dtype=float)
    _check_unit(x)
    n = x.shape[0]
    alpha = 1 - level
    value = hi = bonferroni_lo = 0.0
    for b in range(width):
        k = float(x[:, b].sum())
        value += 1 - _binary_entropy(k / n)
        cl, ch = _bit_capacity(*clopper_pearson(k, n, 1 - alpha / (2 * width)))
        bonferroni_lo += cl
        hi += ch
    pooled = clustered_rate(x.tolist(), level=1 - alpha / 2)
    jensen_lo = width * _bit_capacity(pooled.lo, pooled.hi)[0]
    lo = min(max(bonferroni_lo, jensen_lo), value)
    return Estimate(value=value, lo=lo, hi=max(hi, value), n=n, level=level, method="bsc-bonferroni", n_items=int(x.size))


def capacity_settle_n(bit_errors: Sequence[Sequence[float]], level: float = LEVEL, limit: int = 100_000) -> int | None:
    """Samples at which `channel_capacity`'s interval, with these per-position error rates,
    would exclude 0 bits (None when the rates give 0 bits, or no n up to `limit` does)."""
    x = np.asarray([[float(v) for v in r] for r in bit_errors], dtype=float)
    if x.size == 0:
        return None
    rates = x.mean(axis=0)
    if all(abs(p - 0.5) < 1e-9 for p in rates):
        return None
    n = x.shape[0]
    while n <= limit:
        if channel_capacity(np.tile(rates, (n, 1)).tolist(), level).lo > 0:
            return n
        n = max(n + 1, int(n * 1.1))
    return None


def scale(e: Estimate, factor: float) -> Estimate:
    """e times a known positive constant (a unit change)."""
    if e.value is None:
        return e
    return e.model_copy(update={"value": e.value * factor, "lo": e.lo * factor, "hi": e.hi * factor})


def exact(value: float, n: int) -> Estimate:
    """A quantity fixed by definition: its interval is the point."""
    return Estimate(value=value, lo=value, hi=value, n=n, method="exact")


def negate(e: Estimate) -> Estimate:
    """-e, with its interval flipped."""
    if e.value is None:
        return e
    return e.model_copy(update={"value": -e.value, "lo": -e.hi, "hi": -e.lo})


def complement(e: Estimate) -> Estimate:
    """1 - e for a rate (a false-positive rate's true-negative rate), with its interval flipped."""
    if e.value is None:
        return e
    return e.model_copy(update={"value": 1 - e.value, "lo": 1 - e.hi, "hi": 1 - e.lo})


def _check_unit(x: np.ndarray) -> None:
    if x.size and (x.min() < -1e-9 or x.max() > 1 + 1e-9):
        raise ValueError(f"a rate needs values in [0, 1], got [{x.min()}, {x.max()}]")


def _resolution(x: np.ndarray) -> float:
    """The data's unit: 1 for integer data, else the smallest gap between distinct values (or 1)."""
    if np.all(np.equal(np.mod(x, 1), 0)):
        return 1.0
    u = np.unique(x)
    return float(np.diff(u).min()) if u.size > 1 else 1.0


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - level) / 2))


def _t(level: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(1 - (1 - level) / 2, df))


def detectable_effect(e: Estimate, power: float = 0.8) -> float | None:
    """The smallest difference from its value this estimate's n detects at `power` (two-sided, its level).

    For a rate, from the binomial variance at the observed value (0.5 when it is at a bound);
    for a mean, from the interval's own half-width.
    """
    if e.value is None or e.n == 0:
        return None
    from scipy.stats import norm

    za, zb = _z(e.level), float(norm.ppf(power))
    if e.method in ("clopper-pearson", "clustered"):
        p = e.value if 0 < e.value < 1 else 0.5
        return (za + zb) * math.sqrt(p * (1 - p) / e.n)
    if e.method == "paired-newcombe":
        return (za + zb) * math.sqrt(max(e.hi - e.lo, 1e-9) ** 2 / (4 * za * za))
    if e.method == "exact":
        return None
    half = (e.hi - e.lo) / 2
    return (za + zb) * half / za


def samples_needed(e: Estimate, effect: float, power: float = 0.8) -> int | None:
    """Samples that would detect a difference of `effect` from this value at `power`."""
    mde = detectable_effect(e, power)
    if mde is None or effect <= 0:
        return None
    return max(1, math.ceil(e.n * (mde / effect) ** 2))


def samples_to_settle(e: Estimate, threshold: float, limit: int = 100_000) -> int | None:
    """Samples at which an interval like this one, with the same value, would lie wholly on one
    side of `threshold` (None when the value sits on the threshold or no n up to `limit` does).

    For a rate, found by evaluating the interval method itself at growing n; for a mean, from
    the half-width shrinking as 1/sqrt(n).
    """
    if e.value is None or e.n == 0 or e.method == "exact" or abs(e.value - threshold) < 1e-9:
        return None
    if e.method in ("clopper-pearson", "clustered"):
        n = e.n
        while n <= limit:
            lo, hi = clopper_pearson(e.value * n, n, e.level)
            if lo > threshold or hi < threshold:
                return n
            n = max(n + 1, int(n * 1.1))
        return None
    half = max(e.hi - e.value, e.value - e.lo)
    n = math.ceil(e.n * (half / abs(e.value - threshold)) ** 2)
    return n if n <= limit else None
