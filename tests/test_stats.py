import numpy as np
import pytest

from cotscope.metrics.early_answering import area_over, binned_curve, step_value
from cotscope.metrics.stats import bootstrap_mean, paired_difference


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(1).integers(0, 2, size=200)
    a, b = bootstrap_mean(x, seed=3), bootstrap_mean(x, seed=3)
    assert a == b and a.n == 200
    assert a.lo < a.value < a.hi
    assert a.value == pytest.approx(x.mean())
    # Normal-approximation half-width of a proportion, as a sanity check on the width.
    half = 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / 200)
    assert (a.hi - a.lo) / 2 == pytest.approx(half, rel=0.2)


def test_bootstrap_edge_cases():
    assert bootstrap_mean([]).value is None and bootstrap_mean([]).n == 0
    one = bootstrap_mean([0.5])
    assert (one.value, one.lo, one.hi) == (0.5, 0.5, 0.5)


def test_paired_difference():
    d = paired_difference([1, 1, 0, 1], [0, 1, 0, 0])
    assert d.value == pytest.approx(0.5) and d.n == 4
    with pytest.raises(ValueError):
        paired_difference([1], [1, 0])


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
    curve = binned_curve([{"m": pts}, {"m": [(0.0, 1.0), (1.0, 1.0)]}], ["m"], bins=4)
    assert [p.x for p in curve] == [0, 0.25, 0.5, 0.75, 1]
    assert [p.values["m"].value for p in curve] == [0.5, 0.5, 1, 1, 1]
