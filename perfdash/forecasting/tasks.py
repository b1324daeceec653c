from __future__ import annotations

from celery import shared_task

from perfdash.forecasting import capacity
from perfdash.live import publish


@shared_task(name="forecast.refit", queue="forecast", ignore_result=True)
def refit() -> int | None:
    """Refit every capacity target (skipped if a refit is already running), then tell open
    capacity pages."""
    written = capacity.refit()
    if written is not None:
        publish.forecasts_changed(written)
    return written
