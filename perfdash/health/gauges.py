"""The backlog gauges, read from PostgreSQL: what is waiting, and for how long."""

from __future__ import annotations

from django.db import connection

from perfdash.lib.redis import client, key

# A read of the rollup deltas stops counting here: past it, compaction is far behind and the
# exact number matters less than the read staying cheap.
DELTA_COUNT_CAP = 1_000_000


# Behind: the oldest batch waiting to be stored was accepted longer ago than this (the
# header's amber dot, and the seeded rule's threshold).
BEHIND_AFTER_S = 60.0


def status(now: float) -> dict:
    """What every page's header shows: is ingest behind? One read of the outbox, cheap while
    it is small (as it is unless ingest is behind)."""
    age = oldest_batch_age_s(now)
    return {"behind": age > BEHIND_AFTER_S, "oldest_batch_age_s": round(age, 1)}


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
    return gauges


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
