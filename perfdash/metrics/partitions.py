"""Daily range partitions of the big metric tables: created on demand, dropped by age."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

from django.db import connection, transaction

# table -> its partition column
PARTITIONED = {
    "metrics_point": "ts",
    "metrics_rollup_minute": "minute",
    "metrics_rollup_hour": "hour",
}
_LOCK_ID = 0x7065726664  # pg advisory lock serialising partition DDL ("perfd")
_known: set[tuple[str, date]] = set()


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def ensure(table: str, days: Iterable[date]) -> None:
    """Create the daily partitions that are missing. Safe to run from many workers at once."""
    missing = sorted({d for d in days if (table, d) not in _known})
    if not missing:
        return
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
        for day in missing:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF {table} "
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
            )
    _known.update((table, d) for d in missing)


def forget() -> None:
    """Drop the cache of known partitions (after retention dropped some, or in tests)."""
    _known.clear()


def existing(table: str) -> list[tuple[str, date]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [table],
        )
        names = [r[0] for r in cur.fetchall()]
    out = []
    for name in names:
        m = re.fullmatch(rf"{table}_p(\d{{8}})", name)
        if m:
            s = m.group(1)
            out.append((name, date(int(s[:4]), int(s[4:6]), int(s[6:]))))
    return sorted(out, key=lambda x: x[1])


def drop_before(table: str, cutoff: date) -> list[str]:
    """Drop the partitions whose whole day lies before `cutoff`; returns their names."""
    dropped = []
    for name, day in existing(table):
        if day + timedelta(days=1) <= cutoff:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
                cur.execute(f"DROP TABLE IF EXISTS {name}")
            dropped.append(name)
    forget()
    return dropped
