"""Translated data points and what each adds (models.deltas) into one ingest `Batch`: numbers
as plain points, histograms as pre-aggregated entries whose buckets are placed into sketch
bins all at once (histograms.pairs)."""

from __future__ import annotations

import math

import numpy as np

from perfdash.metrics.batch import Aggregates, Batch, SeriesKey
from perfdash.metrics.sketch import key_values
from perfdash.otlp.histograms import Histogram, close, pairs
from perfdash.otlp.translate import Point


def batch(batch_id: str, points: list[Point], added: list[float | Histogram | None]) -> Batch:
    series: dict[SeriesKey, int] = {}
    idx, ts, values = [], [], []
    entries = []  # (series index, ts, histogram, factor)
    for p, delta in zip(points, added, strict=True):
        if delta is None:
            continue
        t = p.time_ns / 1e9
        for out in p.outputs:
            s = series.setdefault(out.series, len(series))
            if out.keep == "value":
                if p.stream is not None and not delta:
                    continue  # a counter that did not move adds nothing
                v = delta * out.factor
            elif not delta.count:
                continue
            elif out.keep == "histogram":
                entries.append((s, t, delta, out.factor))
                continue
            elif out.keep == "sum":
                if not delta.sum:
                    continue
                v = delta.sum
            else:
                v = float(delta.count)
            idx.append(s)
            ts.append(t)
            values.append(v)
    return Batch.of_lists(batch_id, series, idx, ts, values, _aggregates(entries) if entries else None)


def _aggregates(entries: list[tuple[int, float, Histogram, float]]) -> Aggregates:
    owners, lowers, uppers, counts = [], [], [], []
    lo, hi, mean, exact_lo, exact_hi, total = [], [], [], [], [], []
    nan = math.nan
    for e, (_, _, h, factor) in enumerate(entries):
        lower, upper, count = h.ranges(factor)
        owners += [e] * len(count)
        lowers += lower
        uppers += upper
        counts += count
        low = h.min if h.min is not None else h.within[0]
        high = h.max if h.max is not None else h.within[1]
        lo.append(nan if low is None else low * factor)
        hi.append(nan if high is None else high * factor)
        mean.append(h.sum / h.count * factor if h.sum is not None and h.count else 0.0)
        exact_lo.append(nan if h.min is None else h.min * factor)
        exact_hi.append(nan if h.max is None else h.max * factor)
        total.append(nan if h.sum is None else h.sum * factor)
    owner = np.array(owners, np.int64)
    lo, hi, mean = np.array(lo), np.array(hi), np.array(mean)
    lower, upper = close(np.array(lowers), np.array(uppers), lo[owner], hi[owner], mean[owner])
    m = len(entries)
    pair_start, keys, pair_count = pairs(owner, lower, upper, np.array(counts, np.int64), m)
    # Where the sender gave no min, max or sum (an interval of a cumulative histogram), they
    # come from the buckets: the lowest and highest bound holding values, the bins' values.
    lowest, highest = np.full(m, np.inf), np.full(m, -np.inf)
    np.minimum.at(lowest, owner, lower)
    np.maximum.at(highest, owner, upper)
    exact_lo, exact_hi, total = np.array(exact_lo), np.array(exact_hi), np.array(total)
    exact_lo = np.where(np.isnan(exact_lo), lowest, exact_lo)
    exact_hi = np.where(np.isnan(exact_hi), highest, exact_hi)
    for e in np.flatnonzero(np.isnan(total)):
        sl = slice(pair_start[e], pair_start[e + 1])
        total[e] = float((key_values(keys[sl]) * pair_count[sl]).sum())
    return Aggregates(
        np.array([e[0] for e in entries], np.int32),
        np.array([e[1] for e in entries], np.float64),
        np.array([e[2].count for e in entries], np.int64),
        total,
        exact_lo,
        exact_hi,
        pair_start,
        keys,
        pair_count,
    )
