"""Garbage collection: series and rollup keys that have not reported for the rollup retention
are removed, together with whatever rows of theirs remain.

Rows expire with their daily partitions (tasks.enforce_retention), but a series or a key, once
made, would stay for ever: a flood of new names (agents, tag values, metrics) would keep every
process's caches and key index at its size long after the names stopped reporting. Each
series and key carries the last UTC day a batch of it was stored (`last_seen`, marked by
store.prepare); what is older than ROLLUP_RETENTION_DAYS goes.

Removal and creation take turns on the key counter's row lock (store._create takes it first),
so a worker never finds a series or key that is removed before it has used it; a worker that
cached one earlier finds out when it next marks it seen, and makes it again. Processes drop
removed keys from their index when they see the counter's generation move on (keys.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

# What still holds rows of a series or key last seen before the cutoff: they all lie before
# the end of that day plus the ingest API's allowance for clocks ahead (10 min); two days also
# cover workers and PostgreSQL whose clocks disagree. Bounding the time prunes the deletes to
# the oldest partitions left (usually none: they have been dropped already).
_ROWS_BEFORE = timedelta(days=2)
_KEY_ROWS = {
    "metrics_rollup_delta": "minute",
    "metrics_rollup_minute": "minute",
    "metrics_rollup_hour": "hour",
}

# The row exists once any key was made since the counter came (migration 0003); keys from
# before it have none, and removing them must take the same turn.
_COUNTER_ROW = "INSERT INTO metrics_keyversion (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
_LOCK_COUNTER = "SELECT 1 FROM metrics_keyversion WHERE id = 1 FOR UPDATE"
# SKIP LOCKED: a row locked now is being marked seen (store._mark_seen); a marked row no
# longer matches when the lock is taken (PostgreSQL checks the condition again).
_CLAIM = "SELECT id FROM {table} WHERE last_seen < %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
# Series counts per metric (cardinality.py) go down with the series; a metric without any
# leaves the count of metric names.
_UNCOUNT = """
WITH gone AS (DELETE FROM metrics_series WHERE id = ANY(%s) RETURNING metric)
UPDATE metrics_metricseries c SET series = c.series - g.n
  FROM (SELECT metric, count(*) AS n FROM gone GROUP BY metric) g WHERE c.metric = g.metric
"""


@dataclass
class Collected:
    keys: int = 0
    series: int = 0


def collect(today: date | None = None, chunk: int = 5000) -> Collected:
    """Remove the series and rollup keys last seen before ROLLUP_RETENTION_DAYS ago, and their
    rows, `chunk` at a time (each in a transaction of its own, so workers making new series wait
    for one chunk at most)."""
    today = datetime.now(UTC).date() if today is None else today
    cutoff = today - timedelta(days=settings.ROLLUP_RETENTION_DAYS)
    done = Collected()
    while True:
        removed = _chunk(cutoff, chunk)
        done.keys += removed.keys
        done.series += removed.series
        if removed.keys < chunk and removed.series < chunk:
            break
    if done.keys:
        # Once, at the end: each process then loads its index anew once, not once per chunk.
        # Until then it holds keys without rows, which reads find empty.
        with connection.cursor() as cur:
            cur.execute("UPDATE metrics_keyversion SET generation = generation + 1 WHERE id = 1")
    return done


def _chunk(cutoff: date, chunk: int) -> Collected:
    rows_before = datetime.combine(cutoff + _ROWS_BEFORE, datetime.min.time(), UTC)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(_COUNTER_ROW)
        cur.execute(_LOCK_COUNTER)
        key_ids = _claim(cur, "metrics_rollupkey", cutoff, chunk)
        if key_ids:
            for table, period in _KEY_ROWS.items():
                cur.execute(
                    f"DELETE FROM {table} WHERE key_id = ANY(%s) AND {period} < %s", [key_ids, rows_before]
                )
            cur.execute("DELETE FROM metrics_rollupkey WHERE id = ANY(%s)", [key_ids])
        series_ids = _claim(cur, "metrics_series", cutoff, chunk)
        if series_ids:
            cur.execute(
                "DELETE FROM metrics_point WHERE series_id = ANY(%s) AND ts < %s", [series_ids, rows_before]
            )
            cur.execute(_UNCOUNT, [series_ids])
            cur.execute("DELETE FROM metrics_metricseries WHERE series <= 0")
    return Collected(len(key_ids), len(series_ids))


def _claim(cur, table: str, cutoff: date, chunk: int) -> list[int]:
    cur.execute(_CLAIM.format(table=table), [cutoff, chunk])
    return [r[0] for r in cur.fetchall()]
