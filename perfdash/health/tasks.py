from __future__ import annotations

from celery import shared_task

from perfdash.health import record as recording


@shared_task(name="health.record", queue="alerts", ignore_result=True)
def record() -> int:
    """Store perfdash's own health metrics (queue `alerts`, not `ingest`: a backlog of batches
    must not delay the measurement of that backlog)."""
    return recording.record()
