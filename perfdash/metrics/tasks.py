from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.conf import settings

from perfdash.metrics import compact, gc, partitions

log = logging.getLogger(__name__)


@shared_task(name="metrics.compact_rollups", queue="ingest", ignore_result=True)
def compact_rollups() -> int:
    return compact.compact()


@shared_task(name="metrics.enforce_retention", queue="ingest", ignore_result=True)
def enforce_retention() -> dict[str, list[str]]:
    """Create the next days' partitions ahead of need and drop expired ones."""
    today = datetime.now(UTC).date()
    for table in partitions.PARTITIONED:
        partitions.ensure(table, [today, today + timedelta(days=1)])
    retention = {
        "metrics_point": settings.RAW_RETENTION_DAYS,
        "metrics_rollup_minute": settings.MINUTE_ROLLUP_RETENTION_DAYS,
        "metrics_rollup_hour": settings.ROLLUP_RETENTION_DAYS,
    }
    dropped = {}
    for table, days in retention.items():
        dropped[table] = partitions.drop_before(table, today - timedelta(days=days))
        if dropped[table]:
            log.info("retention dropped %s", ", ".join(dropped[table]))
    return dropped


@shared_task(name="metrics.collect_garbage", queue="ingest", ignore_result=True)
def collect_garbage() -> dict[str, int]:
    """Remove series and rollup keys that have not reported for the rollup retention."""
    removed = gc.collect()
    if removed.keys or removed.series:
        log.info("garbage collection removed %d rollup keys and %d series", removed.keys, removed.series)
    return asdict(removed)
