"""Deploy rules: a verified deploy that made a metric slower notifies once, through the same
channels, silences and outbox as the other rules; one that made nothing slower notifies
nobody. Real PostgreSQL, a local HTTP receiver, and a real Celery worker end to end."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from perfdash.alerts import delivery, deploys, engine, transports
from perfdash.alerts.models import AlertEvent, AlertRule, AlertState, Delivery, NotificationChannel, Silence
from perfdash.alerts.tasks import verify_deploys
from perfdash.api.models import ApiToken
from perfdash.compare import verify
from perfdash.events.models import Event
from tests.alerts.test_concurrency import in_threads
from tests.compare.test_verify import AFTER, BLOCK_S, DEPLOY, NOW, report, rolled, slower_in
from tests.conftest import start_worker, wait_until


def deploy_event(version: str = "1.3.0", at: float = DEPLOY, **tags: str) -> Event:
    token = ApiToken.objects.first() or ApiToken.issue("deployer", ["ingest"])[0]
    return Event.objects.create(
        ts=datetime.fromtimestamp(at, UTC),
        kind="deploy",
        title=f"v{version}",
        tags={"version": version, **tags},
        token=token,
    )


@pytest.fixture(autouse=True)
def verify_after(settings) -> None:
    settings.DEPLOY_VERIFY_AFTER = AFTER
    settings.DEPLOY_VERIFY_METRICS = ("agent_response_ms", "llm_call_ms")


def deploy_rule(name: str = "Slower after a deploy", channels=(), **fields) -> AlertRule:
    rule = AlertRule(name=name, kind="deploy", **{"threshold": 0, **fields})
    rule.full_clean()
    rule.save()
    rule.channels.set(channels)
    return rule


@pytest.fixture
def passes(django_capture_on_commit_callbacks):
    """A verification pass at a chosen time: (deploys verified, notifications queued)."""

    def run(now: float = NOW) -> tuple[int, list[list[int]]]:
        sent: list[list[int]] = []
        with django_capture_on_commit_callbacks(execute=True):
            verified = deploys.verify_due(now, notify=sent.append)
        return verified, sent

    return run


@pytest.fixture
def slower_deploy(db) -> Event:
    """1.3.0 replaced 1.2.0 on every agent and answers about 25 % slower (p95)."""
    AlertRule.objects.all().delete()
    report(rolled(), slower_in("1.3.0"))
    return deploy_event()


def test_a_deploy_rule_takes_only_what_applies_to_it(db, settings):
    rule = deploy_rule(metric="agent_response_ms", statistic="max", scope="agent", repeat_seconds=60)
    assert (rule.scope, rule.statistic, rule.repeat_seconds, rule.send_resolved) == (
        "fleet",
        "p95",
        None,
        False,
    )
    with pytest.raises(ValidationError, match="DEPLOY_VERIFY_METRICS"):
        AlertRule(name="x", kind="deploy", metric="agent_memory_bytes", threshold=0).full_clean()
    with pytest.raises(ValidationError, match="0 %"):
        AlertRule(name="x", kind="deploy", threshold=-0.1).full_clean()


def test_due_deploys_are_those_tagged_with_a_version_whose_range_after_is_over(db):
    due = deploy_event()
    deploy_event(at=NOW - 600)  # its 20 minutes are not over
    Event.objects.create(ts=due.ts, kind="deploy", title="no version", tags={}, token=due.token)
    Event.objects.create(ts=due.ts, kind="note", title="a note", tags={"version": "1"}, token=due.token)
    deploy_event(at=NOW - 5 * 86400)  # the minute rollups no longer hold the time before it
    assert list(deploys.due(NOW)) == [due]
    Event.objects.filter(pk=due.pk).update(verified_at=due.ts)
    assert list(deploys.due(NOW)) == []


def test_the_previous_version_is_the_last_deploy_of_another_version_that_covered_as_much(db):
    deploy_event("1.2.0", at=DEPLOY - 7200)
    deploy_event("1.3.0-rc1", at=DEPLOY - 3600, node="node-0")  # one node's: not what the fleet ran
    deploy_event("1.3.0", at=DEPLOY - 1800)  # the same version again
    deploy_event("1.1.0", at=DEPLOY + 60)  # later
    assert deploys.previous_version(deploy_event()) == "1.2.0"
    assert deploys.previous_version(deploy_event(node="node-0")) == "1.3.0-rc1"
    assert deploys.previous_version(deploy_event(node="node-1")) == "1.2.0"
    assert deploys.previous_version(deploy_event("1.2.0", at=DEPLOY - 7200)) is None


def test_a_slower_deploy_is_verified_once_and_alerts_once(slower_deploy, passes):
    rule = deploy_rule()
    verified, [ids] = passes()
    slower_deploy.refresh_from_db()
    assert verified == 1 and slower_deploy.verification["verdict"] == "slower" and slower_deploy.verified_at
    [alert] = AlertEvent.objects.filter(id__in=ids)
    assert (alert.rule, alert.deploy, alert.subject, alert.to_state) == (
        rule,
        slower_deploy,
        "agent_response_ms",
        "firing",
    )
    assert alert.value == slower_deploy.verification["metrics"]["agent_response_ms"]["rel"]
    assert alert.notification_pending and not alert.silenced
    # Later passes find nothing to verify; the rule is no threshold rule the engine evaluates.
    assert passes(NOW + 60) == (0, [])
    assert engine.evaluate(now=NOW) == [] and not AlertState.objects.exists()
    assert AlertEvent.objects.count() == 1


def test_the_message_says_by_how_much_against_which_version(slower_deploy):
    rule = deploy_rule()
    deploys.verify_due(NOW)
    events = list(AlertEvent.objects.all())
    n = delivery.notification(rule, events)
    rel = events[0].value
    assert n.summary.startswith(f"deploy 1.3.0: agent_response_ms p95 +{rel * 100:.0f} % (95 % interval +")
    assert n.summary.endswith(" against 1.2.0") and n.state_label == "SLOWER AFTER DEPLOY"
    [(metric, change)], more = n.rows(10)
    assert (metric, more) == ("agent_response_ms", 0) and change in n.summary and "95 % interval" in change
    assert "/compare/?metric=agent_response_ms&a.tag.version=1.2.0&a.from=" in n.dashboard_url
    body = transports.webhook_payload(n, 0)
    assert body["kind"] == "deploy" and body["deploy"]["version"] == "1.3.0"
    assert body["deploy"]["event_id"] == events[0].deploy_id and body["offenders"][0]["value"] == rel


def test_the_message_names_each_slower_metric_and_what_it_was_compared_with():
    v = {
        "version": "1.3.0",
        "against": None,
        "node": "node-2",
        "confidence": 0.95,
        "a": {"from": "2026-11-28T09:30:00Z", "to": "2026-11-28T10:00:00Z"},
        "metrics": {
            "agent_response_ms": {"verdict": "slower", "stat": "p95", "rel": 0.17, "lo": 0.12, "hi": 0.22},
            "llm_call_ms": {"verdict": "slower", "stat": "p95", "rel": 0.3, "lo": 0.2, "hi": 0.41},
        },
    }
    assert deploys.message(v, ["agent_response_ms"]) == (
        "deploy 1.3.0 on node-2: agent_response_ms p95 +17 % (95 % interval +12 % to +22 %) "
        "against the 30 min before it"
    )
    assert deploys.message({**v, "against": "1.2.0"}, ["llm_call_ms", "agent_response_ms"]) == (
        "deploy 1.3.0 on node-2: llm_call_ms p95 +30 % (95 % interval +20 % to +41 %); "
        "agent_response_ms p95 +17 % (95 % interval +12 % to +22 %) against 1.2.0"
    )


def test_a_deploy_that_made_nothing_slower_alerts_nobody(db):
    AlertRule.objects.all().delete()
    report(rolled())
    deploy_rule()
    event = deploy_event()
    assert deploys.verify_due(NOW) == 1
    event.refresh_from_db()
    assert event.verification["verdict"] == "no_change" and not AlertEvent.objects.exists()


@pytest.mark.parametrize(
    ("fields", "alerts"),
    [
        ({"threshold": 0.5}, 0),  # a slowdown of 50 % or more
        ({"metric": "llm_call_ms"}, 0),  # only LLM calls, which were not verified slower
        ({"metric": "agent_response_ms"}, 1),
        ({"node": "node-1"}, 1),  # a fleet-wide deploy is every node's
        ({"enabled": False}, 0),
    ],
)
def test_a_rule_hears_of_its_metric_node_and_slowdowns(slower_deploy, fields, alerts):
    deploy_rule(**fields)
    deploys.verify_due(NOW)
    assert AlertEvent.objects.count() == alerts


def test_a_deploy_on_another_node_is_not_a_node_rules(slower_deploy):
    Event.objects.filter(pk=slower_deploy.pk).update(tags={"version": "1.3.0", "node": "node-0"})
    deploy_rule(node="node-1")
    deploys.verify_due(NOW)
    assert Event.objects.get().verified_at and not AlertEvent.objects.exists()


def test_a_silenced_deploy_alert_is_recorded_and_notifies_nobody(slower_deploy, passes):
    rule = deploy_rule()
    Silence.objects.create(rule=rule, starts_at=timezone.now() - timedelta(hours=1), ends_at=timezone.now())
    assert passes() == (1, []) and AlertEvent.objects.get().silenced
    assert not AlertEvent.objects.filter(notification_pending=True).exists()


def test_a_crash_leaves_the_deploy_unverified_and_unalerted(slower_deploy, monkeypatch):
    deploy_rule()

    def crash(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(verify, "verify", crash)
    assert deploys.verify_due(NOW) == 0
    slower_deploy.refresh_from_db()
    assert slower_deploy.verified_at is None and slower_deploy.verification is None
    assert not AlertEvent.objects.exists()
    monkeypatch.undo()
    assert deploys.verify_due(NOW) == 1 and AlertEvent.objects.count() == 1


def test_a_deploy_alerts_a_rule_about_a_metric_once_whatever_happens(slower_deploy):
    rule = deploy_rule()
    deploys.verify_due(NOW)
    Event.objects.update(verified_at=None)  # as if it were verified again
    with pytest.raises(IntegrityError, match="deploy_alert_once"), transaction.atomic():
        deploys.record(Event.objects.get(), NOW)
    assert AlertEvent.objects.filter(rule=rule).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_verify_a_deploy_once_and_send_one_message(clean_tables, receiver):
    hook, base = receiver
    AlertRule.objects.all().delete()
    report(rolled(), slower_in("1.3.0"))
    deploy_event()
    deploy_rule(
        channels=[NotificationChannel.objects.create(name="hook", kind="webhook", url=f"{base}/hook")]
    )

    sent: list[list[int]] = []
    assert sorted(in_threads(lambda: deploys.verify_due(NOW, notify=sent.append))) == [0, 1]
    assert len(sent) == 1
    in_threads(lambda: delivery.deliver(sent[0]), n=3)  # the same delivery, three times at once
    assert len(hook.requests) == 1 and Delivery.objects.filter(status="sent").count() == 1
    assert json.loads(hook.requests[0]["body"])["summary"].startswith("deploy 1.3.0: agent_response_ms p95 +")


def test_the_preview_lists_the_deploys_that_would_have_notified(slower_deploy, admin_client):
    deploys.verify_due(NOW)
    data = {
        **{k: "" for k in ("capacity_target", "metric", "node", "agent", "tag_key", "tag_value")},
        **{"name": "Deploys", "kind": "deploy", "statistic": "p95", "scope": "fleet", "threshold": ""},
        **{"window_seconds": "300", "min_samples": "1", "comparison": "gt", "for_seconds": "0"},
        **{"no_data": "keep", "severity": "warning", "recovery_threshold": "", "repeat_seconds": ""},
    }
    r = admin_client.post("/admin/alerts/alertrule/preview/", data)
    assert r.status_code == 200 and r.context["errors"] is None
    assert [(c.subject, c.event) for c in r.context["changes"]] == [
        ("agent_response_ms (deploy 1.3.0)", "firing")
    ]
    assert b"verified over the last 24 hours" in r.content
    r = admin_client.post("/admin/alerts/alertrule/preview/", {**data, "threshold": "50 %"})
    assert r.context["changes"] == []


def test_the_admin_saves_a_deploy_rule_with_its_threshold_in_percent(admin_client):
    from tests.alerts.test_admin import form_data

    r = admin_client.post(
        "/admin/alerts/alertrule/add/",
        form_data(name="Deploys", kind="deploy", metric="", threshold="10 %", comparison="lt"),
    )
    assert r.status_code == 302, r.context["adminform"].form.errors
    rule = AlertRule.objects.get(name="Deploys")
    assert (rule.threshold, rule.comparison, rule.metric) == (0.1, "gte", "")
    page = admin_client.get(f"/admin/alerts/alertrule/{rule.pk}/change/")
    assert page.context["adminform"].form.initial["threshold"] == "10 %"
    r = admin_client.post(
        "/admin/alerts/alertrule/add/", form_data(name="Empty", kind="deploy", threshold="")
    )
    assert r.status_code == 302 and AlertRule.objects.get(name="Empty").threshold == 0
    r = admin_client.post("/admin/alerts/alertrule/add/", form_data(name="No threshold", threshold=""))
    assert r.status_code == 200 and "threshold" in r.context["adminform"].form.errors


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_through_a_worker_exactly_one_message_for_the_node_a_deploy_made_slower(
    tmp_path, clean_tables, receiver
):
    """Both nodes move to 1.3.0; only node-1's agents answer slower. One deploy event per
    node: node-1's notifies once, node-0's not at all, however often the task runs."""
    hook, base = receiver
    AlertRule.objects.all().delete()
    now = time.time() // BLOCK_S * BLOCK_S
    deploy = DEPLOY + (now - NOW)
    report(
        rolled(),
        lambda agent, ts, v: np.where((v == "1.3.0") & (agent % 2 == 1), 1.3, 1.0),
        now=now,
        deploy=deploy,
    )
    slower, same = deploy_event(at=deploy, node="node-1"), deploy_event(at=deploy, node="node-0")
    deploy_rule(
        channels=[NotificationChannel.objects.create(name="hook", kind="webhook", url=f"{base}/hook")]
    )
    worker = start_worker(
        tmp_path,
        "deploys",
        queues="alerts,notify",
        DEPLOY_VERIFY_AFTER=AFTER,
        DEPLOY_VERIFY_METRICS="agent_response_ms",
        ALERTS_ALLOW_PRIVATE_URLS="1",
    )
    try:
        verify_deploys.delay()
        wait_until(lambda: len(hook.requests) == 1, what="the deploy alert")
        verify_deploys.delay()
        wait_until(
            lambda: not Event.objects.filter(verified_at__isnull=True).exists(), what="both verifications"
        )
        verify_deploys.delay()
        wait_until(lambda: finished(worker) == 3, what="the third pass")
        time.sleep(0.5)  # and nothing more arrives
    finally:
        worker.kill()
    assert len(hook.requests) == 1
    body = json.loads(hook.requests[0]["body"])
    assert body["kind"] == "deploy" and body["deploy"]["event_id"] == slower.id
    assert body["summary"].startswith("deploy 1.3.0 on node-1: agent_response_ms p95 +")
    same.refresh_from_db()
    assert same.verification["verdict"] == "no_change" and same.verification["node"] == "node-0"
    assert Event.objects.get(pk=slower.pk).verification["verdict"] == "slower"


def finished(worker) -> int:
    """The verification passes the worker has finished, by its log."""
    return sum(
        "alerts.verify_deploys[" in line and " succeeded in " in line for line in worker.output().splitlines()
    )
