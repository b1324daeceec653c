from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.conf import settings

from perfdash.health import measure
from perfdash.ingest.models import FailedBatch, IngestedBatch, PendingBatch
from perfdash.lib.unavailable import DATABASE_AWAY
from perfdash.live import peaks, publish
from perfdash.metrics import partitions
from perfdash.metrics.batch import Batch

log = logging.getLogger(__name__)


@shared_task(
    name="ingest.store_batch",
    queue="ingest",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # PostgreSQL away (restart, failover, dropped connection): wait and try again, forever;
    # the message stays in Redis until a try commits.
    autoretry_for=DATABASE_AWAY,
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=None,
)
def store_batch(message: dict) -> None:
    """Store one accepted batch. The message names its outbox row (version 2); version 1
    messages, queued by a web process from before the outbox, carry the batch itself."""
    pending = message.get("pending")
    if pending is None:
        token_id, batch, age_s = message["token_id"], Batch.from_message(message), None
    else:
        kept = PendingBatch.load(pending)
        if kept is None:  # stored already: a second wake-up (the sweeper, a redelivery)
            return
        token_id, batch, age_s = kept
    loaded = time.monotonic()
    try:
        written = IngestedBatch.store(token_id, batch, pending=pending)
        committed = time.monotonic()
    except DATABASE_AWAY:
        partitions.forget()
        raise
    except Exception as exc:
        # Anything else will not fix itself by retrying: keep the batch for a replay.
        log.exception("batch %s could not be stored; kept as a failed batch", batch.batch_id)
        error = f"{type(exc).__name__}: {exc}"
        if pending is None:
            FailedBatch.objects.create(message=message, error=error)
        else:
            PendingBatch.fail(pending, batch.to_message(token_id), error)
        return
    if written:  # after the commit: live dashboards may now read these points
        metrics = sorted({s[0] for s in batch.series})
        publish.points_committed(len(batch), metrics, peaks.of_batch(batch))
        stored = [("perfdash_points_stored_total", len(batch), {})]
        # From the start of the transaction that kept it in the outbox to the commit, however
        # the worker was woken (the web process, OTLP or the sweeper): its age when loaded, on
        # the database's clock, and the time the store took, on this process's steady clock.
        if age_s is not None:
            stored.append(("perfdash_ingest_lag_ms", (age_s + committed - loaded) * 1000, {}))
        measure.push("worker", *stored)


def wake(pending: int, batch_id: str) -> None:
    """Queue the storing of an outbox row (raises when the broker is unreachable)."""
    store_batch.apply_async(args=[{"v": 2, "pending": pending}], argsrepr=f"<batch {batch_id}>")


@shared_task(name="ingest.requeue_pending", queue="ingest", ignore_result=True)
def requeue_pending(older_than_s: float | None = None) -> int:
    """Wake a worker again for every outbox row whose message may have been lost (a worker
    killed between taking and acknowledging it, a Redis restarted without its data)."""
    due = PendingBatch.due(settings.INGEST_REQUEUE_AFTER_S if older_than_s is None else older_than_s)
    for pending in due:
        wake(pending, f"pending {pending}")
    if due:
        log.info("requeued %d pending batches", len(due))
    return len(due)


@shared_task(name="ingest.forget_batches", queue="ingest", ignore_result=True)
def forget_batches() -> int:
    """Batch records older than the idempotency window: nothing re-sends them any more."""
    cutoff = datetime.now(UTC) - timedelta(days=settings.INGEST_IDEMPOTENCY_DAYS)
    return IngestedBatch.forget_before(cutoff)
