from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction

from perfdash.alerts import engine
from perfdash.alerts.models import AlertRule

log = logging.getLogger(__name__)


@shared_task(name="alerts.evaluate", queue="alerts", ignore_result=True)
def evaluate_rules() -> int:
    """Evaluate every enabled rule; queue one delivery per rule and kind of change."""
    notified = 0
    for rule_id in AlertRule.objects.filter(enabled=True).values_list("id", flat=True):
        try:
            event_ids = engine.evaluate(rule_id)
        except Exception:  # one broken rule must not stop the others
            log.exception("evaluating alert rule %s failed", rule_id)
            continue
        for group in engine.group(event_ids):
            transaction.on_commit(lambda ids=group: deliver.delay(ids))
            notified += 1
    return notified


@shared_task(
    name="alerts.deliver", queue="notify", ignore_result=True, acks_late=True, bind=True, max_retries=5
)
def deliver(self, event_ids: list[int]) -> None:
    from perfdash.alerts import delivery

    retry_in = delivery.deliver(event_ids, attempt=self.request.retries + 1)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
