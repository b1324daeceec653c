"""Writing points: series and rollup-key ids, raw rows, and rollup deltas, all by COPY.

`write` runs inside the caller's transaction (the ingest batch record owns it), so the raw
points, the rollup deltas and the batch id commit together or not at all.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import orjson
from django.conf import settings
from django.db import connection, transaction

from perfdash.lib.durations import DAY_S
from perfdash.metrics import cardinality, copydata, keys, partitions
from perfdash.metrics.batch import Batch, SeriesKey
from perfdash.metrics.models import DIMENSION_TAGS
from perfdash.metrics.rollup import group_label, group_values

KeyTuple = tuple[str, str, str, str, str]  # metric, node, agent, tag_key, tag_value

# Series and rollup keys are never deleted, so ids can be cached for the process lifetime.
_series_cache: dict[SeriesKey, tuple[int, tuple[int, ...]]] = {}


def rollup_keys(series: SeriesKey) -> list[KeyTuple]:
    """Every rollup a point of this series counts towards: fleet, node and agent scope, each
    also narrowed by any dimension tag (tool, model, ...) it carries."""
    metric, node, agent, tags_key = series
    keys = [(metric, "", "", "", ""), (metric, node, "", "", ""), (metric, node, agent, "", "")]
    if tags_key != "{}":
        tags = orjson.loads(tags_key)
        for tag in DIMENSION_TAGS:
            if tag in tags:
                v = tags[tag]
                keys += [(metric, "", "", tag, v), (metric, node, "", tag, v), (metric, node, agent, tag, v)]
    return keys


def resolve(series: list[SeriesKey]) -> tuple[np.ndarray, np.ndarray]:
    """Series ids (S,) and rollup key ids (S, L), padded with -1, for a batch's series."""
    missing = [s for s in series if s not in _series_cache]
    if missing:
        _create(missing)
    entries = [_series_cache[s] for s in series]
    width = max(len(e[1]) for e in entries)
    level_keys = np.full((len(series), width), -1, np.int32)
    for i, (_, ids) in enumerate(entries):
        level_keys[i, : len(ids)] = ids
    return np.array([e[0] for e in entries], np.int32), level_keys


def _create(missing: list[SeriesKey]) -> None:
    cols = [list(c) for c in zip(*missing, strict=True)]
    # Committed on its own (ids must outlive a rolled-back batch). Concurrent workers take turns:
    # the counter's row lock, taken first, makes them wait for each other (so their keys'
    # versions commit in order, which readers rely on: keys.py; and no two ever deadlock).
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(keys.NEXT_VERSION)
        version = cur.fetchone()[0]
        # Under the lock, so the series counts and the fold's daily counts never race.
        key_tuples = cardinality.fold(cur, {s: rollup_keys(s) for s in missing})
        all_keys = sorted({k for ks in key_tuples.values() for k in ks})
        kcols = [list(c) for c in zip(*all_keys, strict=True)]
        cur.execute(
            "INSERT INTO metrics_series (metric, node, agent, tags_key, tags, first_seen) "
            "SELECT m, n, a, t, t::jsonb, now() FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
            "AS x(m, n, a, t) ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING RETURNING metric",
            cols,
        )
        cardinality.count_series(cur, [r[0] for r in cur.fetchall()])
        cur.execute(
            "SELECT s.id, s.metric, s.node, s.agent, s.tags_key FROM metrics_series s "
            "JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS x(m, n, a, t) "
            "ON s.metric = x.m AND s.node = x.n AND s.agent = x.a AND s.tags_key = x.t",
            cols,
        )
        series_ids = {tuple(r[1:]): r[0] for r in cur.fetchall()}
        cur.execute(
            "INSERT INTO metrics_rollupkey (metric, node, agent, tag_key, tag_value, version) "
            "SELECT *, %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
            "ON CONFLICT DO NOTHING",
            [version, *kcols],
        )
        cur.execute(
            "SELECT k.id, k.metric, k.node, k.agent, k.tag_key, k.tag_value FROM metrics_rollupkey k "
            "JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) AS x(m, n, a, tk, tv) "
            "ON k.metric = x.m AND k.node = x.n AND k.agent = x.a "
            "AND k.tag_key = x.tk AND k.tag_value = x.tv",
            kcols,
        )
        key_ids = {tuple(r[1:]): r[0] for r in cur.fetchall()}
    for s in missing:
        _series_cache[s] = (series_ids[s], tuple(key_ids[k] for k in key_tuples[s]))


def forget() -> None:
    _series_cache.clear()


def _days(unix_seconds: np.ndarray) -> list[date]:
    days = np.unique((unix_seconds // DAY_S).astype(np.int64))
    return [datetime.fromtimestamp(int(d) * DAY_S, UTC).date() for d in days]


def prepare(batch: Batch, now: float) -> tuple[np.ndarray, np.ndarray]:
    """Everything a write needs that must happen outside its transaction."""
    series_ids, level_keys = resolve(batch.series)
    fresh = batch.ts >= now - settings.RAW_RETENTION_DAYS * DAY_S
    partitions.ensure("metrics_point", _days(batch.ts[fresh]))
    return series_ids, level_keys


def copy_data(
    batch: Batch, series_ids: np.ndarray, level_keys: np.ndarray, now: float
) -> tuple[bytes | None, bytes]:
    """Binary COPY streams of a batch: its raw points (None if all are older than the raw
    retention) and one rollup delta per (rollup key, minute) it touches."""
    fresh = batch.ts >= now - settings.RAW_RETENTION_DAYS * DAY_S
    raw = None
    if fresh.any():
        raw = copydata.raw_points(batch.ts[fresh], series_ids[batch.series_idx[fresh]], batch.value[fresh])
    keys = level_keys[batch.series_idx]  # (points, levels)
    valid = keys >= 0
    point_of = np.nonzero(valid)[0]
    minutes = (batch.ts // 60).astype(np.int64)
    groups = group_values(group_label(keys[valid], minutes[point_of]), batch.value[point_of])
    return raw, copydata.rollups(groups, 60)


RAW_COPY = f"COPY metrics_point {copydata.RAW_COLUMNS} FROM STDIN (FORMAT BINARY)"
DELTA_COPY = (
    f"COPY metrics_rollup_delta {copydata.ROLLUP_COLUMNS.format(period='minute')} FROM STDIN (FORMAT BINARY)"
)


def write(cur, batch: Batch, series_ids: np.ndarray, level_keys: np.ndarray, now: float) -> None:
    """COPY the batch's raw points and rollup deltas, in the caller's transaction."""
    copy_streams(cur, *copy_data(batch, series_ids, level_keys, now))


def copy_streams(cur, raw: bytes | None, deltas: bytes) -> None:
    if raw is not None:
        with cur.copy(RAW_COPY) as cp:
            cp.write(raw)
    with cur.copy(DELTA_COPY) as cp:
        cp.write(deltas)
