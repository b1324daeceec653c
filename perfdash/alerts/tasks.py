from __future__ import annotations

import time

from celery import shared_task

from perfdash.alerts import delivery, deploys, engine
from perfdash.health import measure
from perfdash.live import publish


@shared_task(name="alerts.evaluate", queue="alerts", ignore_result=True)
def evaluate_rules() -> int:
    """Evaluate every enabled rule, then (its transaction committed) queue one delivery per
    rule and kind of change."""
    started = time.perf_counter()
    groups = engine.group(engine.evaluate())
    measure.push("worker", ("perfdash_alert_evaluation_ms", (time.perf_counter() - started) * 1000, {}))
    for ids in groups:
        deliver.delay(ids)
    if groups:
        publish.alerts_changed(sum(map(len, groups)))
    return len(groups)


@shared_task(name="alerts.verify_deploys", queue="alerts", ignore_result=True)
def verify_deploys() -> int:
    """Verify the deploys that are due, and queue the notifications of those that made a
    metric slower (each once its deploy's transaction has committed)."""
    return deploys.verify_due(notify=deliver.delay)


@shared_task(name="alerts.sweep", queue="alerts", ignore_result=True)
def sweep_outbox() -> int:
    """Queue again the notifications a crash or a broker outage left undelivered."""
    groups = delivery.pending()
    for ids in groups:
        deliver.delay(ids)
    return len(groups)


@shared_task(
    name="alerts.deliver",
    queue="notify",
    ignore_result=True,
    acks_late=True,
    bind=True,
    max_retries=delivery.MAX_ATTEMPTS - 1,
)
def deliver(self, event_ids: list[int]) -> None:
    retry_in = delivery.deliver(event_ids, attempt=self.request.retries + 1)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
