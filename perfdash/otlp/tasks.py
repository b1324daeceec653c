from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.conf import settings

from perfdash.otlp.models import forget_streams as forget

log = logging.getLogger(__name__)


@shared_task(name="otlp.forget_streams", queue="ingest", ignore_result=True)
def forget_streams() -> int:
    """Cumulative streams not exported for the rollup retention: their senders are gone."""
    removed = forget(datetime.now(UTC) - timedelta(days=settings.ROLLUP_RETENTION_DAYS))
    if removed:
        log.info("forgot %d OTLP streams not exported for %d days", removed, settings.ROLLUP_RETENTION_DAYS)
    return removed
