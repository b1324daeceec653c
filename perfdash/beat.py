"""Celery queues and the beat schedule, in one place."""

from __future__ import annotations

from datetime import timedelta

TASK_ROUTES = {
    "ingest.*": {"queue": "ingest"},
    "metrics.*": {"queue": "ingest"},
}

BEAT_SCHEDULE = {
    # Folds rollup deltas into minute and hour rollups. Reads merge deltas on the fly, so the
    # cadence only bounds how many delta rows a read has to merge; 5 s keeps that small.
    "compact-rollups": {"task": "metrics.compact_rollups", "schedule": timedelta(seconds=5)},
    # Makes tomorrow's partitions and drops expired ones; hourly is plenty for daily
    # partitions and keeps disk use within an hour of the retention settings.
    "enforce-retention": {"task": "metrics.enforce_retention", "schedule": timedelta(hours=1)},
}
