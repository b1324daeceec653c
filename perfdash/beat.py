"""Celery queues and the beat schedule, in one place."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ

# Read from the environment (and .env) here, not from Django settings: Celery loads this
# module while the settings themselves are being imported.
environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)
ALERTS_EVALUATE_EVERY_S = environ.Env().float("ALERTS_EVALUATE_EVERY_S", default=10.0)
FORECAST_REFIT_EVERY_S = environ.Env().float("FORECAST_REFIT_EVERY_S", default=3600.0)

TASK_ROUTES = {
    "ingest.*": {"queue": "ingest"},
    "metrics.*": {"queue": "ingest"},
    "otlp.*": {"queue": "ingest"},
    "alerts.evaluate": {"queue": "alerts"},
    "alerts.sweep": {"queue": "alerts"},
    "alerts.verify_deploys": {"queue": "alerts"},
    "alerts.deliver": {"queue": "notify"},
    "forecast.*": {"queue": "forecast"},
    "health.*": {"queue": "alerts"},
    "dashboard.*": {"queue": "forecast"},
}

BEAT_SCHEDULE = {
    # Alert rules: every 10 s by default. Rollups are per minute, so faster would mostly
    # re-read the same numbers; slower would delay a firing alert.
    "evaluate-alerts": {"task": "alerts.evaluate", "schedule": timedelta(seconds=ALERTS_EVALUATE_EVERY_S)},
    # The alert outbox: a notification still undelivered once its own retries are over
    # (delivery.STUCK_AFTER_S) is queued again within a minute of that.
    "sweep-alert-outbox": {"task": "alerts.sweep", "schedule": timedelta(seconds=60)},
    # Deploy verification: a deploy is due DEPLOY_VERIFY_AFTER (30 min) after it, and rollups
    # are per minute; verified within a minute of being due is soon enough.
    "verify-deploys": {"task": "alerts.verify_deploys", "schedule": timedelta(seconds=60)},
    # Folds rollup deltas into minute and hour rollups. Reads merge deltas on the fly, so the
    # cadence only bounds how many delta rows a read has to merge; 5 s keeps that small.
    "compact-rollups": {"task": "metrics.compact_rollups", "schedule": timedelta(seconds=5)},
    # Makes tomorrow's partitions and drops expired ones; hourly is plenty for daily
    # partitions and keeps disk use within an hour of the retention settings.
    "enforce-retention": {"task": "metrics.enforce_retention", "schedule": timedelta(hours=1)},
    # The ingest outbox: a batch whose wake-up was lost is queued again within
    # INGEST_REQUEUE_AFTER_S plus this period of its loss; a stored one costs nothing here.
    "requeue-pending-batches": {"task": "ingest.requeue_pending", "schedule": timedelta(seconds=15)},
    # Removes series and rollup keys not seen for the rollup retention. What it reads is a day
    # (last_seen): daily is as often as anything can change, and keeps them within a day of it.
    "collect-garbage": {"task": "metrics.collect_garbage", "schedule": timedelta(days=1)},
    # Forgets batch ids past the idempotency window; hourly keeps the table within an hour of it.
    "forget-ingested-batches": {"task": "ingest.forget_batches", "schedule": timedelta(hours=1)},
    # Cumulative OTLP streams not exported for the rollup retention: their senders are gone. A
    # day, as for series.
    "forget-otlp-streams": {"task": "otlp.forget_streams", "schedule": timedelta(days=1)},
    # perfdash's own health: every 10 s, as often as alert rules are evaluated, so "ingest is
    # more than 60 s behind" fires within a rule evaluation or two of being true.
    "record-health": {"task": "health.record", "schedule": timedelta(seconds=10)},
    # Saved boards' panels of 7 days and more, kept for their first viewers: each copy is served
    # for its reuse time (30 s for 3-hour steps), so a pass every 15 s renews it before it is due.
    "precompute-boards": {"task": "dashboard.precompute_boards", "schedule": timedelta(seconds=15)},
    # Capacity forecasts are fitted on hourly steps: a new hour of history is the first thing
    # that can change them. The page also refits on demand.
    "refit-forecasts": {"task": "forecast.refit", "schedule": timedelta(seconds=FORECAST_REFIT_EVERY_S)},
}
