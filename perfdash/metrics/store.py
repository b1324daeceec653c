"""Writing points: series and rollup-key ids, raw rows, and rollup deltas, all by COPY.

`write` runs inside the caller's transaction (the ingest batch record owns it), so the raw
points, the rollup deltas and the batch id commit together or not at all.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, date, datetime

import numpy as np
import orjson
from django.conf import settings
from django.db import connection, transaction

from perfdash.lib.durations import DAY_S
from perfdash.metrics import cardinality, copydata, keys, partitions
from perfdash.metrics.batch import Aggregates, Batch, SeriesKey
from perfdash.metrics.dimensions import dimension_tags
from perfdash.metrics.rollup import Groups, combine, group_label, group_values

KeyTuple = tuple[str, str, str, str, str]  # metric, node, agent, tag_key, tag_value


class _Recent(OrderedDict):
    """A dict of at most STORE_SERIES_CACHE entries (and never fewer than a batch can bring),
    which forgets the least recently used."""

    def get(self, key, default=None):
        if key not in self:
            return default
        self.move_to_end(key)
        return super().__getitem__(key)

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        size = max(settings.STORE_SERIES_CACHE, settings.INGEST_MAX_POINTS)
        while len(self) > size:
            self.popitem(last=False)


# The ids of series and their rollup keys, as `_create` found or made them. Only garbage
# collection removes any, and only those not seen for the rollup retention: the first batch of
# a day that has one of them finds out when it marks them seen (`_mark_seen`).
_series_cache: _Recent = _Recent()
# Series this process has marked seen today: a batch of only these changes nothing.
_marked: set[int] = set()
_marked_day: date | None = None


def rollup_keys(series: SeriesKey) -> list[KeyTuple]:
    """Every rollup a point of this series counts towards: fleet, node and agent scope, each
    also narrowed by any dimension tag (tool, model, version, ...) it carries."""
    metric, node, agent, tags_key = series
    keys = [(metric, "", "", "", ""), (metric, node, "", "", ""), (metric, node, agent, "", "")]
    if tags_key != "{}":
        tags = orjson.loads(tags_key)
        for tag in dimension_tags():
            if tag in tags:
                v = tags[tag]
                keys += [(metric, "", "", tag, v), (metric, node, "", tag, v), (metric, node, agent, tag, v)]
    return keys


def resolve(series: list[SeriesKey]) -> tuple[np.ndarray, np.ndarray]:
    """Series ids (S,) and rollup key ids (S, L), padded with -1, for a batch's series."""
    found = {s: _series_cache.get(s) for s in series}
    missing = [s for s, entry in found.items() if entry is None]
    if missing:
        _create(missing)
        found.update((s, _series_cache[s]) for s in missing)  # the newest: none forgotten yet
    entries = [found[s] for s in series]
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
    _marked.clear()


# Marks rows seen on a day; the count is of the rows that are there (marked now or already):
# a row being removed meanwhile is waited for and then found gone, never counted.
_TOUCH = """
WITH touched AS (
  UPDATE {table} SET last_seen = %(day)s WHERE id = ANY(%(ids)s::int4[]) AND last_seen < %(day)s RETURNING 1
)
SELECT (SELECT count(*) FROM touched)
     + (SELECT count(*) FROM {table} WHERE id = ANY(%(ids)s::int4[]) AND last_seen >= %(day)s)
"""


def _mark_seen(series_ids: np.ndarray, level_keys: np.ndarray, day: date) -> bool:
    """Record that these series and their keys reported on `day`, unless this process did
    already today; False if any of them is gone (garbage collection removed it)."""
    global _marked_day
    if day != _marked_day:
        _marked.clear()
        _marked_day = day
    fresh = sorted({i for i in series_ids.tolist() if i not in _marked})
    if not fresh:
        return True
    of_fresh = level_keys[np.isin(series_ids, fresh)]
    key_ids = sorted(set(of_fresh[of_fresh >= 0].tolist()))
    # Keys first: a key is never marked later than a series that counts towards it, so a
    # series that garbage collection keeps keeps its keys.
    if not (_touch("metrics_rollupkey", key_ids, day) and _touch("metrics_series", fresh, day)):
        return False
    if len(_marked) + len(fresh) > settings.STORE_SERIES_CACHE:
        _marked.clear()  # bounded: forgetting costs a batch one update that changes nothing
    _marked.update(fresh)
    return True


def _touch(table: str, ids: list[int], day: date) -> bool:
    with connection.cursor() as cur:
        cur.execute(_TOUCH.format(table=table), {"ids": "{" + ",".join(map(str, ids)) + "}", "day": day})
        return cur.fetchone()[0] == len(ids)


def _days(unix_seconds: np.ndarray) -> list[date]:
    days = np.unique((unix_seconds // DAY_S).astype(np.int64))
    return [datetime.fromtimestamp(int(d) * DAY_S, UTC).date() for d in days]


# The generation moves on when garbage collection removes keys, or when the store is emptied
# under running workers (the tests do): every process's cached ids are then suspect. One small
# read per batch, against a batch's COPY.
_GENERATION = "SELECT coalesce((SELECT generation FROM metrics_keyversion WHERE id = 1), 0)"
_generation: int | None = None


def _check_generation() -> None:
    global _generation
    with connection.cursor() as cur:
        cur.execute(_GENERATION)
        generation = cur.fetchone()[0]
    if generation != _generation:
        forget()
        _generation = generation


def prepare(batch: Batch, now: float) -> tuple[np.ndarray, np.ndarray]:
    """Everything a write needs that must happen outside its transaction."""
    _check_generation()
    series_ids, level_keys = resolve(batch.series)
    while not _mark_seen(series_ids, level_keys, datetime.fromtimestamp(now, UTC).date()):
        # Removed since this process cached them: made again (each time garbage collection has
        # removed more of them meanwhile, so this ends).
        for s in batch.series:
            _series_cache.pop(s, None)
        series_ids, level_keys = resolve(batch.series)
    fresh = batch.ts >= now - settings.RAW_RETENTION_DAYS * DAY_S
    partitions.ensure("metrics_point", _days(batch.ts[fresh]))
    return series_ids, level_keys


def copy_data(
    batch: Batch, series_ids: np.ndarray, level_keys: np.ndarray, now: float
) -> tuple[bytes | None, bytes]:
    """Binary COPY streams of a batch: its raw points (None if all are older than the raw
    retention) and one rollup delta per (rollup key, minute) it touches. Pre-aggregated
    entries have no raw rows: they count in the rollups only."""
    fresh = batch.ts >= now - settings.RAW_RETENTION_DAYS * DAY_S
    raw = None
    if fresh.any():
        raw = copydata.raw_points(batch.ts[fresh], series_ids[batch.series_idx[fresh]], batch.value[fresh])
    keys = level_keys[batch.series_idx]  # (points, levels)
    valid = keys >= 0
    point_of = np.nonzero(valid)[0]
    minutes = (batch.ts // 60).astype(np.int64)
    groups = group_values(group_label(keys[valid], minutes[point_of]), batch.value[point_of])
    if batch.aggregates is not None and len(batch.aggregates):
        groups = _with_aggregates(groups, batch.aggregates, level_keys)
    return raw, copydata.rollups(groups, 60)


def _with_aggregates(groups: Groups, agg: Aggregates, level_keys: np.ndarray) -> Groups:
    """The points' groups merged with the entries', each entry counting towards every rollup
    key of its series in the minute of its time, as a point would."""
    keys = level_keys[agg.series_idx]
    valid = keys >= 0
    entry_of = np.nonzero(valid)[0]
    labels = group_label(keys[valid], (agg.ts // 60).astype(np.int64)[entry_of])
    sizes = np.diff(agg.pair_start)[entry_of]
    offsets = np.cumsum(sizes) - sizes
    pair_idx = np.repeat(agg.pair_start[entry_of] - offsets, sizes) + np.arange(int(sizes.sum()))
    n = len(groups)
    return combine(
        np.concatenate([groups.label, labels]),
        np.concatenate([groups.count, agg.count[entry_of]]),
        np.concatenate([groups.sum, agg.sum[entry_of]]),
        np.concatenate([groups.min, agg.min[entry_of]]),
        np.concatenate([groups.max, agg.max[entry_of]]),
        np.concatenate(
            [
                np.repeat(np.arange(n), np.diff(groups.pair_start)),
                n + np.repeat(np.arange(len(labels)), sizes),
            ]
        ),
        np.concatenate([groups.pair_key, agg.pair_key[pair_idx]]),
        np.concatenate([groups.pair_count, agg.pair_count[pair_idx]]),
    )


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
