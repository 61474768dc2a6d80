"""Every interval method in use keeps its promise: simulated data with a known truth, and the
share of 95% intervals that cover it must be at least 93%, at the sample sizes users run."""

import numpy as np
import pytest

from cotscope import stats

RATES = (0.0, 0.02, 0.1, 0.5, 0.9, 1.0)
SIZES = (5, 8, 20, 100)
REPS = 600


def covered(e, truth):
    return e.lo - 1e-12 <= truth <= e.hi + 1e-12


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", RATES)
def test_rate_covers(p, n):
    rng = np.random.default_rng(1000 * n + int(p * 100))
    hits = [covered(stats.rate(rng.random(n) < p), p) for _ in range(REPS)]
    assert np.mean(hits) >= 0.93


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", RATES)
def test_rate_of_unit_values_covers(p, n):
    """Values in [0, 1] that are not 0/1 (an AOC, a per-sample share): beta-distributed with mean p."""
    rng = np.random.default_rng(7 + n)
    if p in (0.0, 1.0):
        draw = lambda: np.full(n, p)  # noqa: E731
    else:
        draw = lambda: rng.beta(2 * p, 2 * (1 - p), size=n)  # noqa: E731
    hits = [covered(stats.rate(draw()), p) for _ in range(REPS)]
    assert np.mean(hits) >= 0.93


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", RATES)
def test_clustered_rate_covers(p, n):
    """Items nested in samples (1 to 4 per sample), strongly correlated within a sample."""
    rng = np.random.default_rng(11 + n)
    hits = []
    for _ in range(REPS):
        clusters = []
        for _ in range(n):
            pi = p if p in (0.0, 1.0) else rng.beta(p * 0.6, (1 - p) * 0.6)
            clusters.append(rng.random(rng.integers(1, 5)) < pi)
        hits.append(covered(stats.clustered_rate(clusters), p))
    assert np.mean(hits) >= 0.93


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", (0.0, 0.1, 0.5, 0.9, 1.0))
@pytest.mark.parametrize("q", (0.0, 0.5, 1.0))
def test_paired_difference_covers(p, q, n):
    """Two paired 0/1 outcomes: a ~ Bernoulli(p); b equals a with probability q, else is fresh."""
    rng = np.random.default_rng(int(100 * p + 10 * q) + n)
    r = 0.5
    truth = p - (q * p + (1 - q) * r)
    hits = []
    for _ in range(REPS):
        a = rng.random(n) < p
        b = np.where(rng.random(n) < q, a, rng.random(n) < r)
        hits.append(covered(stats.paired_rate_difference(a, b), truth))
    assert np.mean(hits) >= 0.93


@pytest.mark.parametrize("n", SIZES)
def test_mean_covers(n):
    rng = np.random.default_rng(n)
    hits = [covered(stats.mean(rng.normal(40.0, 12.0, size=n)), 40.0) for _ in range(REPS)]
    assert np.mean(hits) >= 0.93


@pytest.mark.parametrize("n", SIZES)
def test_clustered_mean_covers(n):
    rng = np.random.default_rng(3 * n)
    hits = []
    for _ in range(REPS):
        clusters = [rng.normal(rng.normal(25.0, 6.0), 3.0, size=rng.integers(1, 5)) for _ in range(n)]
        hits.append(covered(stats.clustered_mean(clusters), 25.0))
    assert np.mean(hits) >= 0.93


def test_every_method_in_use_is_covered_here():
    tested = {"clopper-pearson", "clustered", "paired-newcombe", "t", "t-clustered", "exact", "bsc-bonferroni"}
    assert set(stats.METHODS) == tested


def test_no_zero_width_from_a_handful():
    assert stats.rate([0] * 8).hi >= 0.3
    assert stats.rate([1] * 8).lo <= 0.7
    assert stats.clustered_rate([[0, 0, 0]] * 8).hi >= 0.3
    d = stats.paired_rate_difference([1] * 8, [1] * 8)
    assert d.lo < 0 < d.hi
    m = stats.mean([12.0] * 8)
    assert m.lo < 12 < m.hi


def test_clustering_widens_the_interval_not_the_point():
    flat = stats.rate([1, 1, 0] * 20)
    nested = stats.clustered_rate([[1, 1, 0]] * 20)
    assert nested.value == pytest.approx(flat.value)
    assert nested.hi - nested.lo > flat.hi - flat.lo
    assert nested.n == 20 and nested.n_items == 60


@pytest.mark.parametrize("n", (6, 20, 100))
@pytest.mark.parametrize("errors", [(0.0,) * 4, (0.5,) * 4, (0.0, 0.5, 0.1, 0.3), (0.02, 0.98, 0.5, 0.0, 0.2, 0.45, 0.05, 0.0)])
def test_channel_capacity_covers(errors, n):
    """Payload positions with known error rates; the truth is the sum of 1 - H(p) over them."""
    rng = np.random.default_rng(int(sum(errors) * 100) + n)
    p = np.asarray(errors)
    truth = float(sum(1 - stats._binary_entropy(float(q)) for q in p))
    hits = [covered(stats.channel_capacity(rng.random((n, p.size)) < p), truth) for _ in range(REPS)]
    assert np.mean(hits) >= 0.93


def test_channel_capacity_never_collapses():
    """Every sample decoded without error: the value is N bits, the interval is not [N, N]."""
    e = stats.channel_capacity([[0, 0, 0, 0]] * 8)
    assert e.value == 4 and e.hi == 4 and e.lo < 4
    e = stats.channel_capacity([[0, 1]] * 4 + [[1, 0]] * 4)  # each position wrong half the time
    assert e.value == 0 and e.lo == 0 and e.hi > 0
