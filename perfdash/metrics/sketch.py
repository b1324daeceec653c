"""Mergeable histograms with bounded relative error (DDSketch-style), on numpy arrays.

A value v > 0 falls into bin i = ceil(log_gamma(v)); every value in that bin is within
ALPHA relative error of the bin's representative 2·gamma^i / (gamma + 1). Bins are kept as
sorted int32 "sketch keys" that order like the values they stand for:

    negative values  ->  -BASE - i(|v|)   (below -2^29)
    zero             ->  0
    positive values  ->  +BASE + i(v)     (above 2^29)

A summary is (count, sum, min, max) plus (keys, counts) pairs; merging summaries is adding
counts per key, so any window is read by merging a few stored rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.005  # relative accuracy of every quantile; the read API promises 1 %
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


def key_bounds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper value bound of each key's bin."""
    keys = np.asarray(keys, dtype=np.int64)
    lo = np.zeros(len(keys))
    hi = np.zeros(len(keys))
    pos = keys > 0
    neg = keys < 0
    ip = keys[pos] - BASE
    lo[pos], hi[pos] = GAMMA ** (ip - 1), GAMMA**ip
    ineg = -BASE - keys[neg]
    lo[neg], hi[neg] = -(GAMMA**ineg), -(GAMMA ** (ineg - 1))
    return lo, hi


def key_values(keys: np.ndarray) -> np.ndarray:
    """Representative value of each key's bin (within ALPHA of every value in it)."""
    keys = np.asarray(keys, dtype=np.int64)
    out = np.zeros(len(keys))
    pos = keys > 0
    neg = keys < 0
    out[pos] = 2 * GAMMA ** (keys[pos] - BASE) / (GAMMA + 1)
    out[neg] = -2 * GAMMA ** (-BASE - keys[neg]) / (GAMMA + 1)
    return out


@dataclass
class Summary:
    count: int
    sum: float
    min: float
    max: float
    keys: np.ndarray  # int32, sorted, unique
    counts: np.ndarray  # int64

    @classmethod
    def empty(cls) -> Summary:
        return cls(0, 0.0, math.nan, math.nan, np.zeros(0, np.int32), np.zeros(0, np.int64))

    @classmethod
    def of(cls, values: np.ndarray) -> Summary:
        values = np.asarray(values, dtype=np.float64)
        if not len(values):
            return cls.empty()
        keys, counts = np.unique(keys_for(values), return_counts=True)
        return cls(
            len(values),
            float(values.sum()),
            float(values.min()),
            float(values.max()),
            keys,
            counts.astype(np.int64),
        )

    def quantile(self, q: float) -> float:
        return quantiles(self.keys, self.counts, [q], self.min, self.max)[0]


def merge_pairs(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add up counts per key; returns sorted unique keys and their totals."""
    if not len(keys):
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo < 4_000_000:  # dense range: bincount is ~20x faster than a sort
        totals = np.bincount(keys - lo, weights=counts, minlength=hi - lo + 1)
        nz = np.flatnonzero(totals)
        return (nz + lo).astype(np.int32), totals[nz].astype(np.int64)
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq.astype(np.int32), np.bincount(inverse, weights=counts).astype(np.int64)


def merge(summaries: list[Summary]) -> Summary:
    summaries = [s for s in summaries if s.count]
    if not summaries:
        return Summary.empty()
    keys, counts = merge_pairs(
        np.concatenate([s.keys for s in summaries]), np.concatenate([s.counts for s in summaries])
    )
    return Summary(
        sum(s.count for s in summaries),
        sum(s.sum for s in summaries),
        min(s.min for s in summaries),
        max(s.max for s in summaries),
        keys,
        counts,
    )


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


def encode(keys: np.ndarray, counts: np.ndarray) -> bytes:
    pairs = np.empty(len(keys), PAIR)
    pairs["key"], pairs["count"] = keys, counts
    return pairs.tobytes()


def decode(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.frombuffer(blob, PAIR)
    return pairs["key"], pairs["count"]
