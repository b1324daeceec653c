from __future__ import annotations

import numpy as np
import pytest

from perfdash.metrics import sketch
from perfdash.metrics.rollup import combine, group_label, group_values, split_label


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).lognormal(5, 2, 20_000),
        np.random.default_rng(2).normal(0, 50, 20_000),  # negative, zero-crossing
        np.concatenate([np.zeros(500), np.random.default_rng(3).uniform(0, 1e-6, 500)]),
        np.array([42.0]),
    ],
)
def test_quantiles_stay_within_the_promised_relative_error(values):
    s = sketch.Summary.of(values)
    for q in (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0):
        exact = np.quantile(values, q)
        assert abs(s.quantile(q) - exact) <= sketch.ALPHA * abs(exact) + 1e-12, q


def test_every_value_lies_inside_its_bins_bounds():
    values = np.random.default_rng(4).lognormal(0, 5, 10_000) * np.random.default_rng(5).choice(
        [-1, 1], 10_000
    )
    lo, hi = sketch.key_bounds(sketch.keys_for(values))
    assert np.all((lo <= values) & (values <= hi))


def test_merging_sketches_equals_sketching_the_union():
    a, b = np.random.default_rng(6).lognormal(3, 1, (2, 5000))
    merged = sketch.merge([sketch.Summary.of(a), sketch.Summary.of(b)])
    whole = sketch.Summary.of(np.concatenate([a, b]))
    assert np.array_equal(merged.keys, whole.keys) and np.array_equal(merged.counts, whole.counts)
    assert merged.count == 10_000 and merged.min == whole.min and merged.max == whole.max


def test_sketches_survive_encoding():
    s = sketch.Summary.of(np.random.default_rng(7).lognormal(3, 1, 1000))
    keys, counts = sketch.decode(sketch.encode(s.keys, s.counts))
    assert np.array_equal(keys, s.keys) and np.array_equal(counts, s.counts)


@pytest.mark.parametrize("key_range", [300, 1 << 30], ids=["packed-fast-path", "general-path"])
def test_grouping_values_matches_the_general_merge(key_range):
    rng = np.random.default_rng(8)
    n = 20_000
    label = group_label(rng.integers(0, key_range, n), rng.integers(29_000_000, 29_000_003, n))
    values = rng.lognormal(4, 1, n)
    fast = group_values(label, values)
    ones = np.ones(n, np.int64)
    slow = combine(label, ones, values, values, values, np.arange(n), sketch.keys_for(values), ones)
    for field in ("label", "count", "min", "max", "pair_start", "pair_key", "pair_count"):
        assert np.array_equal(getattr(fast, field), getattr(slow, field)), field
    assert np.allclose(fast.sum, slow.sum)
    keys, minutes = split_label(fast.label)
    assert fast.count.sum() == n and len(set(zip(keys, minutes, strict=True))) == len(fast)
