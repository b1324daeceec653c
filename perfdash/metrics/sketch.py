"""Mergeable histograms with bounded relative error (DDSketch-style), on numpy arrays.

A value v > 0 falls into bin i = ceil(log_gamma(v)); every value in that bin is within
ALPHA relative error of the bin's representative 2·gamma^i / (gamma + 1). Bins are kept as
sorted int32 "sketch keys" that order like the values they stand for:

    negative values  ->  -BASE - i(|v|)   (below -2^29)
    zero             ->  0
    positive values  ->  +BASE + i(v)     (above 2^29)

A rollup row holds (count, sum, min, max) plus (key, count) pairs (`PAIR`); merging rows is
adding counts per key (see rollup.py), so any window is read by merging a few stored rows.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 0.005  # relative accuracy of every quantile; the read API promises 1 %
# The quantiles every read and comparison offers.
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
BASE = 1 << 30

# How one (key, count) pair is stored in a rollup row's `sketch` bytea.
PAIR = np.dtype([("key", "<i4"), ("count", "<i8")])


def keys_for(values: np.ndarray) -> np.ndarray:
    """Sketch key of each value (vectorised)."""
    out = np.zeros(len(values), dtype=np.int32)
    pos = values > 0
    neg = values < 0
    if pos.any():
        out[pos] = BASE + np.ceil(np.log(values[pos]) / LOG_GAMMA).astype(np.int64)
    if neg.any():
        out[neg] = -BASE - np.ceil(np.log(-values[neg]) / LOG_GAMMA).astype(np.int64)
    return out


def key_values(keys: np.ndarray) -> np.ndarray:
    """Representative value of each key's bin (within ALPHA of every value in it)."""
    keys = np.asarray(keys, dtype=np.int64)
    out = np.zeros(len(keys))
    pos = keys > 0
    neg = keys < 0
    out[pos] = 2 * GAMMA ** (keys[pos] - BASE) / (GAMMA + 1)
    out[neg] = -2 * GAMMA ** (-BASE - keys[neg]) / (GAMMA + 1)
    return out


def quantiles(keys: np.ndarray, counts: np.ndarray, qs: list[float], lo: float, hi: float) -> list[float]:
    """Quantiles q in [0, 1], interpolated between the values of rank floor(q·(n-1)) and the
    next one, like PostgreSQL's percentile_cont; clamped into the exact [min, max]."""
    total = int(counts.sum())
    if not total:
        return [math.nan for _ in qs]
    cum = np.cumsum(counts)
    ranks = np.asarray(qs, dtype=np.float64) * (total - 1)
    below = np.floor(ranks)
    last = len(keys) - 1
    v_below = key_values(keys[np.minimum(np.searchsorted(cum, below, side="right"), last)])
    v_above = key_values(
        keys[np.minimum(np.searchsorted(cum, np.minimum(below + 1, total - 1), side="right"), last)]
    )
    vals = v_below + (v_above - v_below) * (ranks - below)
    return [float(min(max(v, lo), hi)) for v in vals]
