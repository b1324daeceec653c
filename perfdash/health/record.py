"""One recording of perfdash's health: the gauges and the drained measurements, stored as one
batch under the node `perfdash`, through the same store as any agent's points, so boards, the
explorer and alert rules read them like any other metric."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import orjson
from django.db import connection, transaction

from perfdash.health import gauges, measure
from perfdash.live import publish
from perfdash.metrics import store
from perfdash.metrics.batch import Batch, SeriesKey

NODE = "perfdash"
ROLE = "worker"  # the gauges are read by a worker's task


def record(now: float | None = None) -> int:
    """Store the health points of now; returns how many."""
    now = time.time() if now is None else now
    points = [(now, ROLE, metric, value, {}) for metric, value in gauges.read(now).items()]
    points += _summed(measure.drain(), now)
    batch = as_batch(points, f"health-{now:.3f}")
    series_ids, level_keys = store.prepare(batch, now)
    with transaction.atomic(), connection.cursor() as cur:
        store.write(cur, batch, series_ids, level_keys, now)
    gauges.note_recorded(now)
    publish.points_committed(len(batch), sorted({s[0] for s in batch.series}))
    return len(batch)


def _summed(measured: list, now: float) -> list:
    """Counters (`_total`) summed into one point per series at `now`; the rest as measured."""
    totals: dict[tuple, float] = defaultdict(float)
    kept = []
    for at, role, metric, value, tags in measured:
        if metric.endswith(measure.COUNTER_SUFFIX):
            totals[(role, metric, orjson.dumps(tags, option=orjson.OPT_SORT_KEYS))] += value
        else:
            kept.append((at, role, metric, value, tags))
    kept += [(now, role, metric, value, orjson.loads(tags)) for (role, metric, tags), value in totals.items()]
    return kept


def as_batch(points: list, batch_id: str) -> Batch:
    """(ts, agent, metric, value, tags) points under the node `perfdash`, as a Batch."""
    series: dict[SeriesKey, int] = {}
    idx = []
    for _, role, metric, _, tags in points:
        s = (metric, NODE, role, orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode())
        idx.append(series.setdefault(s, len(series)))
    return Batch(
        batch_id,
        list(series),
        np.array(idx, np.int32),
        np.array([p[0] for p in points], np.float64),
        np.array([p[3] for p in points], np.float64),
    )
