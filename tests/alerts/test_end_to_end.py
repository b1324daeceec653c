"""Agents go slow: exactly one email and one Slack message. They recover: exactly one
resolved message each. Real PostgreSQL, a real Celery worker delivering on the notify
queue, a real SMTP server and a real HTTP server standing in for Slack."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from perfdash.alerts import engine
from perfdash.alerts.models import AlertRule, Delivery, NotificationChannel
from perfdash.alerts.tasks import deliver
from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch
from tests.conftest import start_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
AGENTS = [("agent_response_ms", f"node-{i % 2}", f"agent-{i}", "{}") for i in range(20)]


def agents_answer_in(ms: float, at: float, token_id: int) -> None:
    idx = np.repeat(np.arange(len(AGENTS), dtype=np.int32), 5)
    values = np.random.default_rng(int(at)).normal(ms, ms * 0.05, len(idx))
    IngestedBatch.store(token_id, Batch(f"at-{at}", AGENTS, idx, np.full(len(idx), at), values), now=at + 1)


def evaluate_and_deliver(now: float) -> int:
    """What the beat task does, at a chosen moment: evaluate, then queue deliveries."""
    groups = engine.group(engine.evaluate(now=now))
    for ids in groups:
        deliver.delay(ids)
    return len(groups)


def test_one_message_per_channel_when_it_breaks_and_one_when_it_recovers(
    tmp_path, clean_tables, settings, mailbox, receiver
):
    slack, base = receiver
    AlertRule.objects.all().delete()  # the seeded defaults watch the same metric
    mail = NotificationChannel.objects.create(name="ops mail", kind="email", recipients="ops@example.com")
    chat = NotificationChannel.objects.create(name="ops chat", kind="slack", url=f"{base}/services/T1/B2/x")
    rule = AlertRule.objects.create(
        name="Response p95 above 2 s",
        metric="agent_response_ms",
        statistic="p95",
        threshold=2000,
        recovery_threshold=1500,
        window_seconds=60,
        min_samples=50,
    )
    rule.channels.set([mail, chat])
    token = ApiToken.issue("agents", ["ingest"])[0]
    worker = start_worker(
        tmp_path,
        "notify",
        queues="notify",
        EMAIL_URL=f"smtp://127.0.0.1:{settings.EMAIL_PORT}",
        ALERTS_ALLOW_PRIVATE_URLS="1",
    )
    try:
        t0 = time.time() // 60 * 60 - 900
        agents_answer_in(3000, t0 + 5, token.id)
        assert evaluate_and_deliver(t0 + 30) == 1
        for later in (40, 50, 55):  # still slow: nothing new
            assert evaluate_and_deliver(t0 + later) == 0
        wait_until(
            lambda: len(mailbox.messages) == 1 and len(slack.requests) == 1, what="the firing messages"
        )

        agents_answer_in(400, t0 + 125, token.id)  # the window now holds only fast answers
        assert evaluate_and_deliver(t0 + 150) == 1
        assert evaluate_and_deliver(t0 + 160) == 0
        wait_until(
            lambda: len(mailbox.messages) == 2 and len(slack.requests) == 2, what="the resolved messages"
        )
        time.sleep(1)  # and nothing more arrives
    finally:
        worker.kill()

    assert len(mailbox.messages) == 2 and len(slack.requests) == 2
    subjects = [m.content.decode() if isinstance(m.content, bytes) else m.content for m in mailbox.messages]
    assert "FIRING" in subjects[0] and "RESOLVED" in subjects[1]
    assert "ops@example.com" in mailbox.messages[0].rcpt_tos
    texts = [json.loads(r["body"])["text"] for r in slack.requests]
    assert "FIRING" in texts[0].upper() and "RESOLVED" in texts[1].upper()
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert Delivery.objects.count() == 4
