"""Placing a sender's buckets into sketch bins: every count kept, every value inside its
bucket, spread evenly on a log scale; open buckets closed by min and max."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfdash.metrics import sketch
from perfdash.otlp.histograms import close, pairs


def placed(lower, upper, counts):
    lower, upper, counts = (np.asarray(x, np.float64) for x in (lower, upper, counts))
    owner = np.zeros(len(counts), np.int64)
    _, keys, held = pairs(owner, lower, upper, counts.astype(np.int64), 1)
    return sketch.key_values(keys), held


@pytest.mark.parametrize("count", [1, 3, 41, 1000, 10**12])
def test_a_bucket_s_count_is_kept_and_placed_inside_it(count):
    values, held = placed([500.0], [750.0], [count])
    assert held.sum() == count
    assert (values >= 500 * (1 - sketch.ALPHA)).all() and (values <= 750 * (1 + sketch.ALPHA)).all()


def test_values_are_spread_evenly_on_a_log_scale():
    values, held = placed([100.0], [10_000.0], [1000])
    median = sketch.quantiles(sketch.keys_for(values), held, [0.5], 100, 10_000)[0]
    assert median == pytest.approx(1000, rel=0.02)  # the bucket's geometric middle


def test_a_single_value_sits_in_the_middle_of_its_bucket():
    values, _ = placed([1.0], [4.0], [1])
    assert values[0] == pytest.approx(2.0, rel=0.01)


def test_open_buckets_are_closed_by_min_and_max_else_by_a_decade():
    lower = np.array([-math.inf, 5.0, 10.0])
    upper = np.array([5.0, 10.0, math.inf])
    mean = np.full(3, 20.0 / 3)
    lo, hi = np.full(3, 2.0), np.full(3, 12.0)
    assert [x.tolist() for x in close(lower, upper, lo, hi, mean)] == [[2.0, 5.0, 10.0], [5.0, 10.0, 12.0]]
    unknown = np.full(3, math.nan)
    assert [x.tolist() for x in close(lower, upper, unknown, unknown, mean)] == [
        [0.5, 5.0, 10.0],
        [5.0, 10.0, 100.0],
    ]


def test_a_histogram_without_bounds_min_or_max_is_placed_at_its_mean():
    nan = np.full(1, math.nan)
    lower, upper = close(np.array([-math.inf]), np.array([math.inf]), nan, nan, np.array([7.0]))
    assert (lower.tolist(), upper.tolist()) == ([7.0], [7.0])


def test_negative_buckets_and_zero():
    values, held = placed([-8.0, 0.0], [-2.0, 0.0], [10, 4])
    assert held.sum() == 14
    assert ((values >= -8.1) & (values <= -1.9) | (values == 0)).all()
