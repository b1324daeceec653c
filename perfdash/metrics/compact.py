"""Fold rollup deltas into the minute and hour rollups.

Ingest appends one delta row per (rollup key, minute) per batch: cheap to write, never a
lock on a shared row. This job moves deltas into one row per (key, minute) and per
(key, hour). It deletes the deltas and the rows they merge into, and writes the merged rows,
in one transaction, so a concurrent read sees either the deltas or their merged result,
never both and never neither. One compactor runs at a time (advisory lock).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from perfdash.lib.durations import DAY_S
from perfdash.lib.pg import binary_cursor
from perfdash.lib.redis import client, key
from perfdash.metrics import copydata, partitions
from perfdash.metrics.rollup import ROW_COLUMNS, Rows, group_label

log = logging.getLogger(__name__)
_LOCK_ID = 0x636F6D7061  # "compa"
_LOCKED = -1  # _fold: another compactor holds the lock
RETURNING = "RETURNING " + ROW_COLUMNS


def _caught_up_key() -> str:
    return key("compact", "caught_up_at")


def compact(chunk: int = 50_000, budget_s: float = 4.0) -> int:
    """Fold deltas in chunks until none are left or the time budget is spent; returns how
    many delta rows were folded (0 if another compactor holds the lock)."""
    started, total = time.monotonic(), 0
    try:
        _ensure_partitions()
        while time.monotonic() - started < budget_s:
            began = time.time()
            n = _fold(chunk)
            if n == _LOCKED:
                break
            total += n
            if n < chunk:  # every delta committed before `began` was seen, so is folded now
                _note_caught_up(began)
                break
    except Exception:
        partitions.forget()  # a partition made in a rolled-back transaction must not be believed
        raise
    if total and not connection.in_atomic_block:  # VACUUM cannot run inside a transaction
        _vacuum_deltas()
    return total


def _note_caught_up(at: float) -> None:
    """Kept for perfdash's own health (compaction lag); losing it costs only that measure."""
    try:
        client().set(_caught_up_key(), at)
    except Exception as exc:
        log.warning("could not note the compaction's progress: %s", type(exc).__name__)


def caught_up_at() -> float | None:
    """When the compactor last found every delta committed before then folded, or None if it
    has not since Redis was emptied. Any delta waiting now was committed after it."""
    value = client().get(_caught_up_key())
    return None if value is None else float(value)


def _vacuum_deltas() -> None:
    """Every fold deletes the deltas it merged: under heavy ingest, tens of thousands of rows
    every few seconds. Autovacuum comes by about once a minute; until then each read of the
    deltas walks the dead rows' index entries too, slowing every live page. SKIP_LOCKED: if
    autovacuum is already at it, leave it the table. TRUNCATE false: giving the emptied pages
    back would take a lock that stalls ingest and reads; the next batches fill them anyway. A
    failed vacuum costs speed, not data: the folds are committed."""
    try:
        with connection.cursor() as cur:
            cur.execute("VACUUM (SKIP_LOCKED, TRUNCATE false) metrics_rollup_delta")
    except DatabaseError as exc:
        log.warning("could not vacuum the rollup deltas: %s", type(exc).__name__)


def _ensure_partitions() -> None:
    """Create the partitions the pending deltas need before the folding transaction: DDL
    inside it would hold the parent tables' locks (and block readers) until it commits."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM min(minute)), extract(epoch FROM max(minute)) "
            "FROM metrics_rollup_delta"
        )
        lo, hi = cur.fetchone()
    if lo is None:
        return
    floors = {
        "metrics_rollup_minute": settings.MINUTE_ROLLUP_RETENTION_DAYS,
        "metrics_rollup_hour": settings.ROLLUP_RETENTION_DAYS,
    }
    for table, days in floors.items():
        first = max(float(lo), time.time() - days * DAY_S)
        if first <= float(hi):
            partitions.ensure(
                table,
                [
                    datetime.fromtimestamp(d * DAY_S, UTC).date()
                    for d in range(int(first // DAY_S), int(float(hi) // DAY_S) + 1)
                ],
            )


def _fold(chunk: int) -> int:
    now = time.time()
    minute_floor = now - settings.MINUTE_ROLLUP_RETENTION_DAYS * DAY_S
    hour_floor = now - settings.ROLLUP_RETENTION_DAYS * DAY_S
    with transaction.atomic():
        cur = binary_cursor()
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_ID])
        if not cur.fetchone()[0]:
            return _LOCKED
        cur.execute(
            "WITH v AS (SELECT ctid FROM metrics_rollup_delta LIMIT %s) "
            "DELETE FROM metrics_rollup_delta d USING v WHERE d.ctid = v.ctid "
            + RETURNING.format(t="d", p="minute"),
            [chunk],
        )
        delta = Rows.of(cur.fetchall())
        if not len(delta.key):
            return 0
        _merge_into(cur, "metrics_rollup_minute", "minute", 60, delta.where(delta.period >= minute_floor))
        _merge_into(cur, "metrics_rollup_hour", "hour", 3600, delta.where(delta.period >= hour_floor))
        return len(delta.key)


def _merge_into(cur, table: str, column: str, period_seconds: int, delta: Rows) -> None:
    if not len(delta.key):
        return
    periods = delta.period // period_seconds * period_seconds
    days = {datetime.fromtimestamp(int(d) * DAY_S, UTC).date() for d in np.unique(periods // DAY_S)}
    partitions.ensure(table, days)
    targets = np.unique(group_label(delta.key, periods))
    cur.execute(
        f"DELETE FROM {table} t USING unnest(%s::int4[], %s::float8[]) AS x(k, p) "
        f"WHERE t.key_id = x.k AND t.{column} = to_timestamp(x.p) "
        f"AND t.{column} >= to_timestamp(%s) AND t.{column} <= to_timestamp(%s) "
        + RETURNING.format(t="t", p=column),
        [
            (targets >> 32).tolist(),
            (targets & 0xFFFFFFFF).astype(np.float64).tolist(),
            float(periods.min()),
            float(periods.max()),
        ],
    )
    existing = Rows.of(cur.fetchall())
    merged = Rows.concat(delta, existing).grouped(period_seconds)
    columns = copydata.ROLLUP_COLUMNS.format(period=column)
    with cur.copy(f"COPY {table} {columns} FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(copydata.rollups(merged, period_seconds))
