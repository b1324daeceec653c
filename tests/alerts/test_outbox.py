"""Notifications are never lost between the evaluation's commit and their delivery, and a
silence never produces a stream of reminder events."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from perfdash.alerts import delivery, engine
from perfdash.alerts.models import AlertEvent, AlertRule, Delivery, NotificationChannel, Silence
from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

NOW = time.time() // 60 * 60 + 30


@pytest.fixture
def slow_fleet(db):
    AlertRule.objects.all().delete()
    token = ApiToken.issue("t", ["ingest"])[0]
    series = [("agent_response_ms", "node-1", "agent-1", "{}")]
    IngestedBatch.store(
        token.id,
        Batch("b", series, np.zeros(30, np.int32), np.full(30, NOW - 20), np.full(30, 3000.0)),
        now=NOW,
    )


def rule(**kw) -> AlertRule:
    return AlertRule.objects.create(
        **{
            "name": "slow",
            "metric": "agent_response_ms",
            "statistic": "p95",
            "threshold": 2000,
            "window_seconds": 120,
            "min_samples": 10,
            **kw,
        }
    )


def test_a_recorded_notification_stays_in_the_outbox_until_delivered(slow_fleet, receiver):
    slack, base = receiver
    r = rule()
    r.channels.add(NotificationChannel.objects.create(name="chat", kind="slack", url=f"{base}/x"))
    ids = engine.evaluate(now=NOW)  # ...and then the worker died before queueing the delivery
    assert AlertEvent.objects.get(id=ids[0]).notification_pending
    soon = datetime.fromtimestamp(NOW + 61, UTC)
    assert delivery.pending(now=soon) == []  # its own retries could still be running
    later = datetime.fromtimestamp(NOW + delivery.STUCK_AFTER_S + 1, UTC)
    assert delivery.pending(now=later) == [ids]
    for group in delivery.pending(now=later):  # what the sweeper does
        delivery.deliver(group)
    assert len(slack.requests) == 1 and delivery.pending(now=later) == []
    delivery.deliver(ids)  # a late duplicate of the original task
    assert len(slack.requests) == 1


def test_one_broken_channel_does_not_stop_the_others(slow_fleet, receiver, settings):
    slack, base = receiver
    settings.EMAIL_BACKEND = "no.such.Backend"  # email fails with an unexpected ImportError
    r = rule()
    broken = NotificationChannel.objects.create(name="broken", kind="email", recipients="ops@example.com")
    chat = NotificationChannel.objects.create(name="chat", kind="slack", url=f"{base}/x")
    r.channels.add(broken, chat)
    ids = engine.evaluate(now=NOW)
    delivery.deliver(ids)
    assert len(slack.requests) == 1
    assert Delivery.objects.get(channel=chat).status == "sent"
    failed = Delivery.objects.get(channel=broken)
    assert failed.status == "retrying" and "unexpected" in failed.error


def test_a_silence_produces_no_stream_of_reminder_events(slow_fleet):
    r = rule(repeat_seconds=60)
    at = datetime.fromtimestamp(NOW, UTC)
    engine.evaluate(now=NOW - 10)  # fires before the silence
    Silence.objects.create(rule=r, starts_at=at - timedelta(seconds=5), ends_at=at + timedelta(hours=1))
    for k in range(10):  # ten passes, ten seconds apart, all reminders due
        engine.evaluate(now=NOW + 60 + 10 * k)
    assert list(r.events.values_list("to_state", flat=True)) == ["firing"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_beat_sweeper_task_delivers_what_a_crash_left_in_the_outbox(slow_fleet, receiver, tmp_path):
    from perfdash.alerts.tasks import sweep_outbox
    from tests.conftest import start_worker, wait_until

    slack, base = receiver
    r = rule()
    r.channels.add(NotificationChannel.objects.create(name="chat", kind="slack", url=f"{base}/x"))
    ids = engine.evaluate(now=NOW)  # ...and the worker died before queueing the delivery
    # Recorded long enough ago (by the worker's clock, not NOW, which may lie ahead) to be stuck.
    stuck_since = datetime.now(UTC) - timedelta(seconds=delivery.STUCK_AFTER_S + 60)
    AlertEvent.objects.filter(id__in=ids).update(at=stuck_since)
    worker = start_worker(tmp_path, "sweeper", queues="alerts,notify", ALERTS_ALLOW_PRIVATE_URLS="1")
    try:
        sweep_outbox.delay()  # by name, as beat sends it: a worker must know "alerts.sweep"
        wait_until(lambda: len(slack.requests) == 1, what="the swept notification")
        wait_until(
            lambda: not AlertEvent.objects.filter(notification_pending=True).exists(), what="the outbox"
        )
    finally:
        worker.kill()
