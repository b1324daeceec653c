from __future__ import annotations

import time

from celery import shared_task

from perfdash.forecasting import capacity
from perfdash.health import measure
from perfdash.live import publish


@shared_task(name="forecast.refit", queue="forecast", ignore_result=True)
def refit() -> int | None:
    """Refit every capacity target (skipped if a refit is already running), then tell open
    capacity pages."""
    started = time.perf_counter()
    written = capacity.refit()
    if written is not None:
        measure.push("worker", ("perfdash_forecast_refit_ms", (time.perf_counter() - started) * 1000, {}))
        publish.forecasts_changed(written)
    return written
