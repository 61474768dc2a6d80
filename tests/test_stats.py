import numpy as np
import pytest
from scipy import stats as sst

from cotscope import stats
from cotscope.metrics import Metric, aggregate
from cotscope.metrics.curves import area_over, binned_curve, step_value


def test_rate_is_clopper_pearson():
    x = np.random.default_rng(1).integers(0, 2, size=200)
    e = stats.rate(x)
    ci = sst.binomtest(int(x.sum()), 200).proportion_ci(method="exact")
    assert e.value == pytest.approx(x.mean()) and e.n == 200 and e.method == "clopper-pearson"
    assert (e.lo, e.hi) == pytest.approx((ci.low, ci.high))


def test_edge_cases():
    assert stats.rate([]).value is None and stats.rate([]).n == 0
    assert stats.mean([]).n == 0
    one = stats.rate([1])
    assert one.value == 1 and one.lo < 0.1 and one.hi == 1
    with pytest.raises(ValueError):
        stats.rate([2.0])


def test_paired_difference():
    d = stats.paired_rate_difference([1, 1, 0, 1], [0, 1, 0, 0])
    assert d.value == pytest.approx(0.5) and d.n == 4 and d.lo < 0.5 < d.hi
    with pytest.raises(ValueError):
        stats.paired_rate_difference([1], [1, 0])
    same = stats.paired_rate_difference([1] * 10 + [0] * 10, [1] * 10 + [0] * 10)
    assert same.value == 0 and same.lo < 0 < same.hi


def test_paired_interval_narrows_with_agreement():
    """Pairs that agree more give a narrower interval for the same difference (the correlation is used)."""
    a = [1] * 10 + [1] * 6 + [0] * 2 + [0] * 22
    b_corr = [1] * 10 + [0] * 6 + [1] * 2 + [0] * 22
    a_ind = [1] * 4 + [1] * 12 + [0] * 8 + [0] * 16
    b_ind = [1] * 4 + [0] * 12 + [1] * 8 + [0] * 16
    corr, ind = stats.paired_rate_difference(a, b_corr), stats.paired_rate_difference(a_ind, b_ind)
    assert corr.value == ind.value == pytest.approx(0.1)
    assert corr.hi - corr.lo < ind.hi - ind.lo


def test_aggregate_picks_the_method_by_kind_and_nesting():
    assert aggregate([[1.0], [0.0]], "rate").method == "clopper-pearson"
    assert aggregate([[1.0, 0.0], [0.0]], "rate").method == "clustered"
    assert aggregate([[3.0], [5.0]], "mean").method == "t"
    assert aggregate([[3.0, 4.0], [5.0]], "mean").method == "t-clustered"
    assert aggregate([[(True, False)], [(True, True)]], "paired").method == "paired-newcombe"


def test_metric_leaves_out_samples_it_does_not_measure():
    m = Metric("x/y", "y", "x", lambda rec: rec, complete_only=False)
    assert m.clusters([[1.0], None, [], [0.0, 1.0]]) == [[1.0], [0.0, 1.0]]


def test_area_over_step_curve_by_hand():
    # agreement 0 on [0, 1/3), 1 from 1/3: area over = 1/3.
    assert area_over([(0, 0), (1 / 3, 1), (2 / 3, 1), (1, 1)]) == pytest.approx(1 / 3)
    # never agrees before the end: area over = 1.
    assert area_over([(0, 0), (0.5, 0), (1, 1)]) == pytest.approx(1.0)
    # agrees all along: 0.
    assert area_over([(0, 1), (1, 1)]) == 0


def test_step_value_and_binning():
    pts = [(0.0, 0.0), (0.5, 1.0), (1.0, 1.0)]
    assert [step_value(pts, f) for f in (0, 0.49, 0.5, 1)] == [0, 0, 1, 1]
    curve = binned_curve([{"m": pts}, {"m": [(0.0, 1.0), (1.0, 1.0)]}], ["m"], bins=4, estimate=lambda m, v, x: stats.rate(v))
    assert [p.x for p in curve] == [0, 0.25, 0.5, 0.75, 1]
    assert [p.values["m"].value for p in curve] == [0.5, 0.5, 1, 1, 1]


def test_samples_to_settle_uses_the_interval_itself():
    zero_of_8 = stats.rate([0] * 8)
    n = stats.samples_to_settle(zero_of_8, 0.2)
    assert stats.clopper_pearson(0, n)[1] < 0.2 <= stats.clopper_pearson(0, n - 1)[1]  # the first n that settles it
    assert stats.samples_to_settle(stats.rate([1, 0] * 4), 0.5) is None  # on the threshold: never settled
    m = stats.mean([1.0, 2.0, 3.0, 4.0])
    assert stats.samples_to_settle(m, 4.0) > 4


def test_a_bounded_metric_clips_its_interval():
    m = Metric("x/d", "d", "x", lambda rec: rec, kind="mean", bounds=(-1.0, 1.0), complete_only=False)
    e = m.estimate([[1.0], [1.0], [0.0], [1.0]])
    assert e.hi == 1.0 and e.lo < e.value < e.hi
