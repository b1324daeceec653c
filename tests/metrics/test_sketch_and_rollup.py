"""The sketch's accuracy promise and the vectorised grouping that builds and merges rollups."""

from __future__ import annotations

import numpy as np
import pytest

from perfdash.metrics import sketch
from perfdash.metrics.rollup import combine, group_label, group_values, split_label


def one_group(values: np.ndarray):
    """The sketch of `values` as ingest builds it: one group, via rollup.group_values."""
    return group_values(np.zeros(len(values), np.int64), values)


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
    g = one_group(values)
    qs = [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0]
    for q, got in zip(qs, sketch.quantiles(g.pair_key, g.pair_count, qs, g.min[0], g.max[0]), strict=True):
        exact = np.quantile(values, q)
        assert abs(got - exact) <= sketch.ALPHA * abs(exact) + 1e-12, q


def test_every_value_is_within_alpha_of_its_bins_representative():
    rng = np.random.default_rng(4)
    values = rng.lognormal(0, 5, 10_000) * rng.choice([-1, 1], 10_000)
    represented = sketch.key_values(sketch.keys_for(values))
    assert np.all(np.abs(represented - values) <= sketch.ALPHA * np.abs(values) * (1 + 1e-9))


def test_keys_order_like_the_values_they_stand_for():
    values = np.array([-1e6, -3.0, -1e-3, 0.0, 1e-3, 3.0, 1e6])
    assert np.all(np.diff(sketch.keys_for(values)) > 0)


def test_merging_stored_rows_equals_sketching_the_union():
    a, b = np.random.default_rng(6).lognormal(3, 1, (2, 5000))
    rows = [one_group(a), one_group(b)]
    merged = combine(
        np.zeros(2, np.int64),
        np.array([r.count[0] for r in rows]),
        np.array([r.sum[0] for r in rows]),
        np.array([r.min[0] for r in rows]),
        np.array([r.max[0] for r in rows]),
        np.concatenate([np.full(len(r.pair_key), i) for i, r in enumerate(rows)]),
        np.concatenate([r.pair_key for r in rows]),
        np.concatenate([r.pair_count for r in rows]),
    )
    whole = one_group(np.concatenate([a, b]))
    assert np.array_equal(merged.pair_key, whole.pair_key) and np.array_equal(
        merged.pair_count, whole.pair_count
    )
    assert merged.count[0] == 10_000 and merged.min[0] == whole.min[0] and merged.max[0] == whole.max[0]


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
