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
    """One OTLP exponential histogram data point: exact count and sum (min and max if sent),
    `scale`, `zero`, positive and negative buckets each as an offset and counts (explicit ones
    stay columns: temporality.py, assemble.py). Plain lists: a histogram has a few dozen
    buckets, where numpy's cost per call would dominate."""

    count: int
    sum: float | None
    min: float | None
    max: float | None
    scale: int = 0
    zero: int = 0
    pos_offset: int = 0
    pos: list[int] = field(default_factory=list)
    neg_offset: int = 0
    neg: list[int] = field(default_factory=list)
    # Bounds every value lies within where min or max is not known (an interval of a
    # cumulative histogram lies within the cumulative min and max).
    within: tuple[float | None, float | None] = (None, None)

    def minus(self, prev: Histogram) -> Histogram | None:
        """This cumulative histogram less an earlier one of the same stream, or None when it
        cannot be a continuation of it (a count or bucket went down): a reset."""
        if self.count < prev.count:
            return None
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
        # The cumulative min and max hold for the interval only where they moved in it.
        delta.min = self.min if self.min is not None and (prev.min is None or self.min < prev.min) else None
        delta.max = self.max if self.max is not None and (prev.max is None or self.max > prev.max) else None
        delta.within = (self.min, self.max)
        return delta

    def ranges(self, factor: float) -> tuple[list[float], list[float], list[int]]:
        """(lower, upper, count) of each bucket holding values, in units scaled by `factor`."""
        lower, upper, counts = [], [], []
        base = 2.0 ** (2.0**-self.scale)
        if self.zero:
            lower.append(0.0)
            upper.append(0.0)
            counts.append(self.zero)
        for i, c in enumerate(self.pos):
            if c:
                lo = factor * base ** (self.pos_offset + i)
                lower.append(lo)
                upper.append(lo * base)
                counts.append(c)
        for i, c in enumerate(self.neg):
            if c:
                lo = factor * base ** (self.neg_offset + i)
                lower.append(-lo * base)
                upper.append(-lo)
                counts.append(c)
        return lower, upper, counts


def bucket_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Where histograms' bucket counts lie in an array holding them one after the other: the
    indices start..start+length-1 of each (start, length), one after the other."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


def _less(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _downscale(h: Histogram, scale: int, side: str) -> tuple[int, list[int]]:
    """One side's buckets at a coarser scale: bucket i becomes i >> (h.scale - scale)."""
    offset, counts = (h.pos_offset, h.pos) if side == "pos" else (h.neg_offset, h.neg)
    shift = h.scale - scale
    if not shift or not counts:
        return offset, counts
    first = offset >> shift
    merged = [0] * (((offset + len(counts) - 1) >> shift) - first + 1)
    for i, c in enumerate(counts):
        merged[((offset + i) >> shift) - first] += c
    return first, merged


def _subtract(
    offset: int, counts: list[int], p_offset: int, p_counts: list[int]
) -> tuple[int, list[int] | None]:
    if not p_counts:
        return offset, counts
    lo = min(offset, p_offset)
    hi = max(offset + len(counts), p_offset + len(p_counts))
    out = [0] * (hi - lo)
    for i, c in enumerate(counts):
        out[offset - lo + i] += c
    for i, c in enumerate(p_counts):
        out[p_offset - lo + i] -= c
    return (lo, out) if min(out) >= 0 else (lo, None)


def close(
    lower: np.ndarray, upper: np.ndarray, lo: np.ndarray, hi: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bucket bounds narrowed to their histogram's min and max (`lo`, `hi` per bucket, NaN
    where not known), then closed where still open: a decade below a bound towards zero or
    minus infinity, a decade above one towards infinity. A bucket straddling zero is taken as
    its positive part; one with no finite bound at all (a histogram without bounds, min or
    max) is placed at its histogram's `mean`."""
    lower, upper = lower.astype(np.float64), upper.astype(np.float64)
    known = ~np.isnan(lo)
    lower[known], upper[known] = np.maximum(lower[known], lo[known]), np.maximum(upper[known], lo[known])
    known = ~np.isnan(hi)
    lower[known], upper[known] = np.minimum(lower[known], hi[known]), np.minimum(upper[known], hi[known])
    unbounded = np.isinf(lower) & np.isinf(upper)
    lower[unbounded] = upper[unbounded] = mean[unbounded]
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
