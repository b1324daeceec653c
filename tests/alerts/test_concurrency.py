"""Two evaluators and duplicated deliveries at once: still exactly one message."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from django.db import connection

from perfdash.alerts import delivery, engine
from perfdash.alerts.models import AlertRule, Delivery, NotificationChannel
from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

pytestmark = pytest.mark.django_db(transaction=True)


def in_threads(fn, n: int = 2) -> list:
    results, barrier = [], threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        results.append(fn())
        connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_evaluators_and_twice_delivered_events_send_one_message(clean_tables, receiver):
    slack, base = receiver
    AlertRule.objects.all().delete()
    chat = NotificationChannel.objects.create(name="chat", kind="slack", url=f"{base}/services/x")
    rule = AlertRule.objects.create(
        name="slow",
        metric="agent_response_ms",
        statistic="p95",
        threshold=2000,
        window_seconds=120,
        min_samples=10,
    )
    rule.channels.add(chat)
    token = ApiToken.issue("t", ["ingest"])[0]
    now = time.time()
    series = [("agent_response_ms", "node-1", "agent-1", "{}")]
    IngestedBatch.store(
        token.id,
        Batch("b", series, np.zeros(30, np.int32), np.full(30, now - 20), np.full(30, 3000.0)),
        now=now,
    )

    notified = [ids for ids in in_threads(lambda: engine.evaluate(now=now)) if ids]
    assert len(notified) == 1  # one evaluator recorded the change; the other skipped or saw it done
    in_threads(lambda: delivery.deliver(notified[0]), n=3)  # the same delivery, three times at once
    assert len(slack.requests) == 1
    assert Delivery.objects.filter(status="sent").count() == 1
