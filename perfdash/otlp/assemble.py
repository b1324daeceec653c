"""Translated data points and what each adds (models.deltas) into one ingest `Batch`: numbers
as plain points, histograms as pre-aggregated entries whose buckets are placed into sketch
bins all at once (histograms.pairs)."""

from __future__ import annotations

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
    return Batch(
        batch_id,
        list(series),
        np.array(idx, np.int32),
        np.array(ts, np.float64),
        np.array(values, np.float64),
        _aggregates(entries) if entries else None,
    )


def _aggregates(entries: list[tuple[int, float, Histogram, float]]) -> Aggregates:
    owners, lowers, uppers, counts = [], [], [], []
    for e, (_, _, h, factor) in enumerate(entries):
        lower, upper, count = h.ranges(factor)
        scaled = Histogram(h.count, h.sum, _times(h.min, factor), _times(h.max, factor))
        scaled.within = (_times(h.within[0], factor), _times(h.within[1], factor))
        lower, upper = close(lower, upper, scaled)
        owners.append(np.full(len(count), e))
        lowers.append(lower)
        uppers.append(upper)
        counts.append(count)
    lower, upper = np.concatenate(lowers), np.concatenate(uppers)
    owner = np.concatenate(owners)
    pair_start, keys, pair_count = pairs(owner, lower, upper, np.concatenate(counts), len(entries))
    m = len(entries)
    lo, hi, total = np.empty(m), np.empty(m), np.empty(m)
    # Where the sender gave no min, max or sum (an interval of a cumulative histogram), they
    # come from the buckets: the lowest and highest bound holding values, the bins' values.
    lowest, highest = np.full(m, np.inf), np.full(m, -np.inf)
    np.minimum.at(lowest, owner, lower)
    np.maximum.at(highest, owner, upper)
    for e, (_, _, h, factor) in enumerate(entries):
        lo[e] = h.min * factor if h.min is not None else lowest[e]
        hi[e] = h.max * factor if h.max is not None else highest[e]
        if h.sum is not None:
            total[e] = h.sum * factor
        else:
            sl = slice(pair_start[e], pair_start[e + 1])
            total[e] = float((key_values(keys[sl]) * pair_count[sl]).sum())
    return Aggregates(
        np.array([e[0] for e in entries], np.int32),
        np.array([e[1] for e in entries], np.float64),
        np.array([e[2].count for e in entries], np.int64),
        total,
        lo,
        hi,
        pair_start,
        keys,
        pair_count,
    )


def _times(v: float | None, factor: float) -> float | None:
    return None if v is None else v * factor
