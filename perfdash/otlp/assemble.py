"""Translated data points and what each adds (temporality.Added) into one ingest `Batch`:
numbers as plain points, histograms as pre-aggregated entries whose buckets are placed into
sketch bins all at once (histograms.pairs)."""

from __future__ import annotations

import math

import numpy as np

from perfdash.metrics.batch import Aggregates, Batch, SeriesKey
from perfdash.metrics.sketch import key_values
from perfdash.otlp.histograms import bucket_indices, close, pairs
from perfdash.otlp.temporality import Added
from perfdash.otlp.translate import EXPLICIT, NUMBER, TO_DELTA, Points

_KEEPS = {"value": 0, "histogram": 1, "sum": 2, "count": 3}


def batch(batch_id: str, points: Points, added: Added) -> Batch:
    series: dict[SeriesKey, int] = {}
    # One row per output of every data point that adds something.
    point, out_series, keep, factor = [], [], [], []
    take = added.take.tolist()
    for i, outputs in enumerate(points.outputs):
        if take[i]:
            for out in outputs:
                point.append(i)
                out_series.append(series.setdefault(out.series, len(series)))
                keep.append(_KEEPS[out.keep])
                factor.append(out.factor)
    if not point:
        return Batch.of_lists(batch_id, series, [], [], [])
    point, out_series = np.array(point, np.int64), np.array(out_series, np.int32)
    keep, factor = np.array(keep), np.array(factor)
    ts = points.array("time_ns")[point] / 1e9
    kind = points.array("kind")[point]
    count, total = added.count[point], added.value[point]  # total: a number, or a histogram's sum

    # Plain points: a number (a counter that did not move adds nothing), or a histogram's
    # sum (if any) or count (if any) as a counter.
    value = np.where(kind == NUMBER, total * factor, np.where(keep == 2, total, count))
    counter = points.array("mode")[point] == TO_DELTA
    plain = (keep == 0) & (kind == NUMBER) & ~(counter & (value == 0))
    plain |= (keep == 2) & (kind != NUMBER) & (count > 0) & ~np.isnan(total) & (total != 0)
    plain |= (keep == 3) & (kind != NUMBER) & (count > 0)
    entries = np.flatnonzero((keep == 1) & (kind != NUMBER) & (count > 0))
    aggregates = None
    if len(entries):
        aggregates = _aggregates(points, added, point[entries], out_series[entries], factor[entries])
    return Batch(
        batch_id, list(series), out_series[plain], ts[plain], value[plain].astype(np.float64), aggregates
    )


def _aggregates(points: Points, added: Added, point: np.ndarray, series_idx: np.ndarray, factor: np.ndarray):
    m = len(point)
    kind = points.array("kind")[point]
    count, total, lo, hi = added.count[point], added.value[point], added.lo[point], added.hi[point]
    within_lo, within_hi = added.within_lo[point], added.within_hi[point]

    # Explicit histograms: each bucket's bounds from its layout, all at once.
    ex = np.flatnonzero(kind == EXPLICIT)
    owner_parts, lower_parts, upper_parts, count_parts = [], [], [], []
    if len(ex):
        edges, edge_start = _edges(points.bounds)
        p = point[ex]
        layout = points.array("layout")[p]
        lengths = added.bstart[p + 1] - added.bstart[p]
        at = bucket_indices(added.bstart[p], lengths)
        j = at - np.repeat(added.bstart[p], lengths)  # bucket number within its histogram
        e = edge_start[np.repeat(layout, lengths)] + j
        f = np.repeat(factor[ex], lengths)
        owner_parts.append(np.repeat(ex, lengths))
        lower_parts.append(edges[e] * f)
        upper_parts.append(edges[e + 1] * f)
        count_parts.append(added.buckets[at])
    # Exponential histograms: bucket by bucket (their layouts differ from export to export).
    for e in np.flatnonzero(kind != EXPLICIT).tolist():
        h = added.histograms[int(point[e])]
        lower, upper, counts = h.ranges(float(factor[e]))
        owner_parts.append(np.full(len(counts), e, np.int64))
        lower_parts.append(np.array(lower, np.float64))
        upper_parts.append(np.array(upper, np.float64))
        count_parts.append(np.array(counts, np.int64))
    owner = np.concatenate(owner_parts)
    lower, upper = np.concatenate(lower_parts), np.concatenate(upper_parts)
    counts = np.concatenate(count_parts)
    held = counts > 0
    owner, lower, upper, counts = owner[held], lower[held], upper[held], counts[held]

    exact_lo, exact_hi, total = lo * factor, hi * factor, total * factor
    low = np.where(np.isnan(lo), within_lo, lo) * factor
    high = np.where(np.isnan(hi), within_hi, hi) * factor
    mean = np.where(~np.isnan(total) & (count > 0), total / np.maximum(count, 1), 0.0)
    lower, upper = close(lower, upper, low[owner], high[owner], mean[owner])
    pair_start, keys, pair_count = pairs(owner, lower, upper, counts, m)
    # Where the sender gave no min, max or sum (an interval of a cumulative histogram), they
    # come from the buckets: the lowest and highest bound holding values, the bins' values.
    lowest, highest = np.full(m, np.inf), np.full(m, -np.inf)
    np.minimum.at(lowest, owner, lower)
    np.maximum.at(highest, owner, upper)
    exact_lo = np.where(np.isnan(exact_lo), lowest, exact_lo)
    exact_hi = np.where(np.isnan(exact_hi), highest, exact_hi)
    for e in np.flatnonzero(np.isnan(total)):
        sl = slice(pair_start[e], pair_start[e + 1])
        total[e] = float((key_values(keys[sl]) * pair_count[sl]).sum())
    return Aggregates(
        series_idx.astype(np.int32),
        points.array("time_ns")[point] / 1e9,
        count,
        total,
        exact_lo,
        exact_hi,
        pair_start,
        keys,
        pair_count,
    )


def _edges(bounds: list[tuple[float, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Every layout's bucket edges, -inf and inf around its bounds, one after the other, and
    where each layout's start: bucket j of layout L is (edges[s + j], edges[s + j + 1])."""
    edges, starts = [], []
    for b in bounds:
        starts.append(len(edges))
        edges += [-math.inf, *b, math.inf]
    return np.array(edges, np.float64), np.array(starts, np.int64)
