"""The backlog gauges, read from PostgreSQL: what is waiting, and for how long; and the
header's status, read by the web process."""

from __future__ import annotations

from django.db import connection

from perfdash.lib.redis import client, key
from perfdash.metrics import compact

# A read of the rollup deltas stops counting here: past it, compaction is far behind and the
# exact number matters less than the read staying cheap.
DELTA_COUNT_CAP = 1_000_000


# Behind: the oldest batch waiting to be stored was accepted longer ago than this (the
# header's amber dot, and the seeded rule's threshold).
BEHIND_AFTER_S = 60.0
# Silent: health.record (every 10 s, on the `alerts` queue) has not run for this long, six
# recordings missed: beat or the worker of that queue is not running, and alert rules are not
# evaluated either.
SILENT_AFTER_S = 60.0


def status(now: float) -> dict:
    """What every page's header shows: is ingest behind, or is nothing recording perfdash's
    health? Read by the web process itself, so it still speaks with every worker stopped. One
    read of the outbox, cheap while it is small (as it is unless ingest is behind), and one
    of Redis."""
    age = oldest_batch_age_s(now)
    silent = silent_s(now)
    reason = ""
    if age > BEHIND_AFTER_S:
        reason = f"perfdash is behind: the oldest batch waiting to be stored came in {age:.0f} s ago"
    elif silent is not None and silent > SILENT_AFTER_S:
        reason = (
            f"perfdash's health was last recorded {silent:.0f} s ago: beat or the worker of the "
            "alerts queue is not running, and no alert rule is evaluated meanwhile"
        )
    return {
        "behind": bool(reason),
        "oldest_batch_age_s": round(age, 1),
        "health_recorded_s_ago": None if silent is None else round(silent, 1),
        "reason": reason,
    }


def recorded_key() -> str:
    return key("health", "recorded_at")


def note_recorded(now: float) -> None:
    client().set(recorded_key(), now)


def silent_s(now: float) -> float | None:
    """Seconds since perfdash's health was last recorded; None if unknown: never recorded
    since Redis was emptied (a fresh install before its first worker, too), or Redis away
    (the live status already shows that)."""
    try:
        value = client().get(recorded_key())
    except Exception:
        return None
    return None if value is None else max(0.0, now - float(value))


def oldest_batch_age_s(now: float) -> float:
    """Seconds since the oldest batch still in the ingest outbox was accepted (0 if none)."""
    with connection.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM min(accepted_at)) FROM ingest_pendingbatch")
        oldest = cur.fetchone()[0]
    return 0.0 if oldest is None else max(0.0, now - float(oldest))


def read(now: float) -> dict[str, float]:
    """{metric: value} of every gauge, at `now`."""
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), extract(epoch FROM min(accepted_at)) FROM ingest_pendingbatch")
        queued, oldest = cur.fetchone()
        # Before counting the deltas: any delta that count sees was committed after this.
        caught_up = compact.caught_up_at()
        cur.execute("SELECT count(*) FROM ingest_failedbatch")
        failed = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM (SELECT 1 FROM metrics_rollup_delta LIMIT %s) d", [DELTA_COUNT_CAP])
        deltas = cur.fetchone()[0]
        cur.execute("SELECT extract(epoch FROM max(fitted_at)) FROM forecasting_capacityforecast")
        fitted = cur.fetchone()[0]
    gauges = {
        "perfdash_ingest_queue_batches": float(queued),
        "perfdash_ingest_oldest_batch_age_seconds": 0.0 if oldest is None else max(0.0, now - float(oldest)),
        "perfdash_ingest_failed_batches": float(failed),
        "perfdash_compaction_backlog_rows": float(deltas),
        "perfdash_deliveries_failed_total": float(_deliveries_failed_since_last_read()),
    }
    if fitted is not None:
        gauges["perfdash_forecast_age_seconds"] = max(0.0, now - float(fitted))
    lag = compaction_lag_s(now, deltas, caught_up)
    if lag is not None:
        gauges["perfdash_compaction_lag_seconds"] = lag
    return gauges


def compaction_lag_s(now: float, deltas: int, caught_up: float | None) -> float | None:
    """How long the oldest rollup delta has waited for the compactor, at most: every delta
    committed before the compactor's last catch-up is folded, so any waiting one came later.
    0 with none waiting; None (unknown) with some waiting and no catch-up noted since Redis
    was emptied."""
    if not deltas:
        return 0.0
    return None if caught_up is None else max(0.0, now - caught_up)


def _deliveries_failed_since_last_read() -> int:
    """Failed delivery attempts since the previous read: a cursor on their ids, kept in Redis
    (the first read counts none, not the whole history)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coalesce(max(id), 0) FROM alerts_delivery",
        )
        newest = cur.fetchone()[0]
        seen = client().getset(key("health", "delivery_seen"), newest)
        if seen is None:
            return 0
        cur.execute(
            "SELECT count(*) FROM alerts_delivery WHERE status = 'failed' AND id > %s AND id <= %s",
            [int(seen), newest],
        )
        return cur.fetchone()[0]
