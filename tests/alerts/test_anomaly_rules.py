"""Anomaly rules: "a metric is anomalous for this time of day", through the same state machine,
channels and outbox; the message explains why."""

from __future__ import annotations

import json

from perfdash.alerts import delivery, engine
from perfdash.alerts.models import AlertRule, NotificationChannel
from perfdash.detect import anomaly
from tests.detect.test_anomaly import NOW, history


def test_an_anomaly_rule_fires_once_and_its_message_explains_it(db, receiver, monkeypatch):
    hook, base = receiver
    history(10, last_hour_factor=2.5)
    AlertRule.objects.all().delete()
    rule = AlertRule(
        name="Odd for the hour", kind="anomaly", metric="agent_response_ms", statistic="p50", threshold=4
    )
    rule.full_clean()
    rule.save()
    rule.channels.set([NotificationChannel.objects.create(name="hook", kind="webhook", url=f"{base}/hook")])
    monkeypatch.setattr(anomaly.time, "time", lambda: NOW)  # the delivery judges "now" too
    for ids in engine.group(engine.evaluate(now=NOW)):
        delivery.deliver(ids)
    assert rule.states.get(subject="").state == "firing"
    assert len(hook.requests) == 1
    body = json.loads(hook.requests[0]["body"])
    assert (
        body["kind"] == "anomaly" and "expected 1" in body["summary"] and "for 03:00 UTC" in body["summary"]
    )
    assert engine.evaluate(now=NOW + 60) == []


def test_the_explanation_reaches_a_real_smtp_session_and_a_slack_receiver(db, receiver, mailbox, monkeypatch):
    hook, base = receiver
    history(10, last_hour_factor=2.5)
    AlertRule.objects.all().delete()
    rule = AlertRule(
        name="Odd for the hour", kind="anomaly", metric="agent_response_ms", statistic="p50", threshold=4
    )
    rule.full_clean()
    rule.save()
    rule.channels.set(
        [
            NotificationChannel.objects.create(name="mail", kind="email", recipients="ops@example.com"),
            NotificationChannel.objects.create(name="chat", kind="slack", url=f"{base}/services/T1/B2/x"),
        ]
    )
    monkeypatch.setattr(anomaly.time, "time", lambda: NOW)
    for ids in engine.group(engine.evaluate(now=NOW)):
        delivery.deliver(ids)
    assert len(mailbox.messages) == 1 and len(hook.requests) == 1
    mail = mailbox.messages[0].content
    mail = mail.decode() if isinstance(mail, bytes) else mail
    slack = hook.requests[0]["body"].decode()
    for text in (mail, slack):
        assert "expected 1" in text and "for 03:00 UTC from the last" in text and "MADs above" in text
