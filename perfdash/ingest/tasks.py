from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from perfdash.ingest.models import FailedBatch, IngestedBatch
from perfdash.live import peaks, publish
from perfdash.metrics import partitions
from perfdash.metrics.batch import Batch

log = logging.getLogger(__name__)
# The database is away (restart, failover, dropped connection). COPY raises psycopg's own
# errors, since Django does not wrap it.
DATABASE_AWAY = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


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
    batch = Batch.from_message(message)
    try:
        written = IngestedBatch.store(message["token_id"], batch)
    except DATABASE_AWAY:
        partitions.forget()
        raise
    except Exception as exc:
        # Anything else will not fix itself by retrying: keep the batch for a replay.
        log.exception("batch %s could not be stored; kept as a failed batch", batch.batch_id)
        FailedBatch.objects.create(message=message, error=f"{type(exc).__name__}: {exc}")
        return
    if written:  # after the commit: live dashboards may now read these points
        metrics = sorted({s[0] for s in batch.series})
        publish.points_committed(len(batch), metrics, peaks.of_batch(batch))


@shared_task(name="ingest.forget_batches", queue="ingest", ignore_result=True)
def forget_batches() -> int:
    """Batch records older than the idempotency window: nothing re-sends them any more."""
    cutoff = datetime.now(UTC) - timedelta(days=settings.INGEST_IDEMPOTENCY_DAYS)
    return IngestedBatch.forget_before(cutoff)
