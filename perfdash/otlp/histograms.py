"""OTLP histograms: their buckets, the difference of two cumulative ones, and their placing
into sketch bins (docs/otlp.md, "Histograms").

A sender's bucket says only how many values fell between its bounds. `pairs` places each
bucket's count over the sketch bins between those bounds, evenly on a log scale: the j-th of
n values at the fraction (j + ½)/n of the bucket's bins. So a percentile lands in the bucket
that holds it, and is as precise as that bucket is narrow (plus the sketch's ALPHA): exactly
what the sender measured, no more.

Where a bound is missing (the first and last explicit buckets reach to ±infinity) the
histogram's own min and max close it when sent; without them a bucket reaching down to zero
(or up to infinity) is taken to span one decade below (above) its finite bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from perfdash.metrics.sketch import keys_for

# How many sketch bins one bucket may be spread over: at ALPHA = 0.5 % a factor of 1e17.
MAX_BINS = 4096
# A bucket open towards zero or infinity, with no min or max to close it, spans this factor.
OPEN_BUCKET_FACTOR = 10.0


@dataclass
class Histogram:
    """One OTLP histogram data point: exact count and sum (min and max if sent), and either
    explicit buckets (`bounds`, `counts` with one more entry) or an exponential histogram
    (`scale`, `zero`, positive and negative buckets each as an offset and counts)."""

    count: int
    sum: float | None
    min: float | None
    max: float | None
    bounds: np.ndarray | None = None
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scale: int = 0
    zero: int = 0
    pos_offset: int = 0
    pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    neg_offset: int = 0
    neg: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Bounds every value lies within where min or max is not known (an interval of a
    # cumulative histogram lies within the cumulative min and max).
    within: tuple[float | None, float | None] = (None, None)

    @property
    def exponential(self) -> bool:
        return self.bounds is None

    def buckets_consistent(self) -> bool:
        if self.exponential:
            total = self.zero + int(self.pos.sum()) + int(self.neg.sum())
            return total == self.count and (self.pos >= 0).all() and (self.neg >= 0).all()
        return len(self.counts) == len(self.bounds) + 1 and int(self.counts.sum()) == self.count

    def minus(self, prev: Histogram) -> Histogram | None:
        """This cumulative histogram less an earlier one of the same stream, or None when it
        cannot be a continuation of it (a counter went down, the buckets changed): a reset."""
        if self.count < prev.count or self.exponential != prev.exponential:
            return None
        if self.exponential:
            scale = min(self.scale, prev.scale)
            pos_offset, pos = _subtract(*_downscale(self, scale, "pos"), *_downscale(prev, scale, "pos"))
            neg_offset, neg = _subtract(*_downscale(self, scale, "neg"), *_downscale(prev, scale, "neg"))
            zero = self.zero - prev.zero
            if pos is None or neg is None or zero < 0:
                return None
            delta = Histogram(
                self.count - prev.count, _less(self.sum, prev.sum), None, None,
                scale=scale, zero=zero, pos_offset=pos_offset, pos=pos, neg_offset=neg_offset, neg=neg,
            )  # fmt: skip
        else:
            if len(self.bounds) != len(prev.bounds) or not np.array_equal(self.bounds, prev.bounds):
                return None
            counts = self.counts - prev.counts
            if (counts < 0).any():
                return None
            delta = Histogram(
                self.count - prev.count, _less(self.sum, prev.sum), None, None, self.bounds, counts
            )
        # The cumulative min and max hold for the interval only where they moved in it.
        delta.min = self.min if self.min is not None and (prev.min is None or self.min < prev.min) else None
        delta.max = self.max if self.max is not None and (prev.max is None or self.max > prev.max) else None
        delta.within = (self.min, self.max)
        return delta

    def ranges(self, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, upper, count) of each bucket holding values, in units scaled by `factor`."""
        if self.exponential:
            base = 2.0 ** (2.0**-self.scale)
            pos_i = np.flatnonzero(self.pos)
            neg_i = np.flatnonzero(self.neg)
            pos_lo = factor * base ** (self.pos_offset + pos_i).astype(np.float64)
            neg_lo = factor * base ** (self.neg_offset + neg_i).astype(np.float64)
            lower = np.concatenate([[0.0] if self.zero else [], pos_lo, -neg_lo * base])
            upper = np.concatenate([[0.0] if self.zero else [], pos_lo * base, -neg_lo])
            counts = np.concatenate([[self.zero] if self.zero else [], self.pos[pos_i], self.neg[neg_i]])
            return lower, upper, counts.astype(np.int64)
        edges = np.concatenate([[-math.inf], self.bounds * factor, [math.inf]])
        held = np.flatnonzero(self.counts)
        return edges[held], edges[held + 1], self.counts[held].astype(np.int64)

    def to_state(self) -> dict:
        state = {"count": self.count, "sum": self.sum, "min": self.min, "max": self.max}
        if self.exponential:
            state |= {
                "scale": self.scale,
                "zero": self.zero,
                "pos_offset": self.pos_offset,
                "pos": self.pos.tolist(),
                "neg_offset": self.neg_offset,
                "neg": self.neg.tolist(),
            }
        else:
            state |= {"bounds": self.bounds.tolist(), "counts": self.counts.tolist()}
        return state

    @classmethod
    def from_state(cls, state: dict) -> Histogram:
        head = (state["count"], state["sum"], state["min"], state["max"])
        if "bounds" in state:
            return cls(*head, np.array(state["bounds"], np.float64), np.array(state["counts"], np.int64))
        return cls(
            *head, scale=state["scale"], zero=state["zero"],
            pos_offset=state["pos_offset"], pos=np.array(state["pos"], np.int64),
            neg_offset=state["neg_offset"], neg=np.array(state["neg"], np.int64),
        )  # fmt: skip


def _less(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _downscale(h: Histogram, scale: int, side: str) -> tuple[int, np.ndarray]:
    """One side's buckets at a coarser scale: bucket i becomes i >> (h.scale - scale)."""
    offset, counts = (h.pos_offset, h.pos) if side == "pos" else (h.neg_offset, h.neg)
    shift = h.scale - scale
    if not shift or not len(counts):
        return offset, counts
    index = (offset + np.arange(len(counts))) >> shift
    merged = np.zeros(int(index[-1] - index[0]) + 1, np.int64)
    np.add.at(merged, index - index[0], counts)
    return int(index[0]), merged


def _subtract(
    offset: int, counts: np.ndarray, p_offset: int, p_counts: np.ndarray
) -> tuple[int, np.ndarray | None]:
    if not len(p_counts):
        return offset, counts
    lo = min(offset, p_offset)
    hi = max(offset + len(counts), p_offset + len(p_counts))
    out = np.zeros(hi - lo, np.int64)
    out[offset - lo : offset - lo + len(counts)] += counts
    out[p_offset - lo : p_offset - lo + len(p_counts)] -= p_counts
    return (lo, out) if (out >= 0).all() else (lo, None)


def close(lower: np.ndarray, upper: np.ndarray, h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """Bucket bounds narrowed to the histogram's min and max (or the bounds it lies within),
    then closed where still open: a decade below a bound towards zero or minus infinity, a
    decade above one towards infinity. A bucket straddling zero is taken as its positive part;
    one with no finite bound at all (a histogram without bounds, min or max) is placed at the
    histogram's mean."""
    lo = h.min if h.min is not None else h.within[0]
    hi = h.max if h.max is not None else h.within[1]
    lower, upper = lower.astype(np.float64), upper.astype(np.float64)
    if lo is not None and math.isfinite(lo):
        lower, upper = np.maximum(lower, lo), np.maximum(upper, lo)
    if hi is not None and math.isfinite(hi):
        lower, upper = np.minimum(lower, hi), np.minimum(upper, hi)
    unbounded = np.isinf(lower) & np.isinf(upper)
    if unbounded.any():
        mean = h.sum / h.count if h.sum is not None and h.count else 0.0
        lower[unbounded] = upper[unbounded] = mean
    up = upper == math.inf
    upper[up] = np.where(lower[up] > 0, lower[up] * OPEN_BUCKET_FACTOR, 0.0)
    lower[up] = np.maximum(lower[up], 0.0)
    down = (upper > 0) & (lower <= 0)
    lower[down] = upper[down] / OPEN_BUCKET_FACTOR
    down = (upper <= 0) & (lower == -math.inf)
    lower[down] = upper[down] * OPEN_BUCKET_FACTOR
    return lower, upper


def pairs(owner: np.ndarray, lower: np.ndarray, upper: np.ndarray, counts: np.ndarray, entries: int):
    """Sketch (key, count) pairs of buckets (lower, upper] holding `counts` values, each bucket
    belonging to entry `owner`: (pair_start per entry, keys, counts), grouped by entry.

    Bounds must be closed (`close`) and not straddle zero. A bucket's count is placed evenly
    over its bins on a log scale; a degenerate bucket (lower == upper) in the one bin of its
    bound."""
    first = keys_for(np.where(lower == upper, upper, np.nextafter(lower, upper))).astype(np.int64)
    bins = np.minimum(keys_for(upper).astype(np.int64) - first + 1, MAX_BINS)
    # The j-th of n values goes (j + ½)/n of the way through the bucket's k bins. With fewer
    # values than bins, one entry per value; else one per bin, holding the values j with
    # j < (i + 1)·n/k - ½ (counted in exact integer arithmetic).
    width = np.minimum(bins, counts)
    bucket = np.repeat(np.arange(len(counts)), width)
    i = np.arange(int(width.sum())) - np.repeat(np.cumsum(width) - width, width)
    k, n = bins[bucket], counts[bucket]
    per_value = n <= k
    below = np.clip(-((k - 2 * (i + 1) * n) // (2 * k)), 0, n)
    below_prev = np.clip(-((k - 2 * i * n) // (2 * k)), 0, n)
    held = np.where(per_value, 1, below - below_prev)
    offset = np.where(per_value, (2 * i + 1) * k // (2 * n), i)
    keep = held > 0
    keys = (first[bucket] + offset)[keep].astype(np.int32)
    held = held[keep]
    own = owner[bucket][keep]
    order = np.lexsort((keys, own))
    keys, held, own = keys[order], held[order], own[order]
    # Buckets of one entry may share a bin at their common bound: add those up.
    if len(keys):
        change = np.ones(len(keys), bool)
        change[1:] = (keys[1:] != keys[:-1]) | (own[1:] != own[:-1])
        starts = np.flatnonzero(change)
        keys, own, held = keys[starts], own[starts], np.add.reduceat(held, starts)
    return np.searchsorted(own, np.arange(entries + 1)).astype(np.int64), keys, held.astype(np.int64)
