"""Outlier rules: "an agent is an outlier among its peers", through the same state machine,
channels and outbox as threshold rules; the notification explains each offender."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from perfdash.alerts import delivery, engine
from perfdash.alerts.models import AlertRule, NotificationChannel
from tests.detect.conftest import NOW, leaking, peers  # noqa: F401 (the fixtures)


def outlier_rule(**extra) -> AlertRule:
    fields = dict(
        name="Slow agent",
        kind="outlier",
        metric="agent_response_ms",
        statistic="p95",
        scope="node",
        threshold=5,
        window_seconds=900,
        min_samples=20,
    )
    rule = AlertRule(**(fields | extra))
    rule.full_clean()
    rule.save()
    return rule


def test_an_outlier_rule_needs_peers_and_a_tolerance_and_fires_above_it(db):
    with pytest.raises(ValidationError, match="Peers are"):
        outlier_rule(scope="agent")
    with pytest.raises(ValidationError, match="MADs"):
        outlier_rule(threshold=0)
    rule = outlier_rule(comparison="lt", agent="x")
    assert (rule.comparison, rule.agent, rule.no_data) == ("gt", "", "keep")


def test_only_the_slow_agent_fires_and_the_message_explains_it(peers, receiver):  # noqa: F811
    hook, base = receiver
    AlertRule.objects.all().delete()
    rule = outlier_rule()
    rule.channels.set([NotificationChannel.objects.create(name="hook", kind="webhook", url=f"{base}/hook")])
    events = engine.evaluate(now=NOW)
    assert dict(rule.states.filter(state="firing").values_list("subject", "value")).keys() == {"agent-5"}
    assert rule.states.get(subject="agent-5").value > 5
    for ids in engine.group(events):
        delivery.deliver(ids)
    assert len(hook.requests) == 1
    body = json.loads(hook.requests[0]["body"])
    assert body["kind"] == "outlier" and "MADs" in body["summary"]
    text = json.dumps(body)
    assert "agent-5" in text and "against a median of" in text and "among its node's agents" in text
    assert "/agents/agent-5/" in body["dashboard_url"]
    # Nothing changed: a second pass notifies nobody.
    assert engine.evaluate(now=NOW + 60) == []


def test_with_too_few_peers_no_agent_fires(peers, settings):  # noqa: F811
    settings.OUTLIER_MIN_PEERS = 30  # each node has 12 agents
    AlertRule.objects.all().delete()
    rule = outlier_rule()
    engine.evaluate(now=NOW)
    assert not rule.states.filter(state="firing").exists()
    assert outlier_rule(name="Fleet-wide", scope="fleet").pk  # 24 peers: still too few
    engine.evaluate(now=NOW)
    assert not AlertRule.objects.get(name="Fleet-wide").states.filter(state="firing").exists()


def test_growth_is_for_outlier_rules_over_at_most_six_hours(db):
    with pytest.raises(ValidationError, match="outlier rules"):
        AlertRule(name="t", metric="agent_memory_bytes", statistic="growth", threshold=1).full_clean()
    with pytest.raises(ValidationError, match="at most 21600 seconds"):
        outlier_rule(metric="agent_memory_bytes", statistic="growth", window_seconds=7 * 3600)


def test_a_growth_rule_fires_on_the_young_leak_and_says_how_fast_it_grows(leaking, receiver):  # noqa: F811
    hook, base = receiver
    AlertRule.objects.all().delete()
    rule = outlier_rule(
        name="Leak", metric="agent_memory_bytes", statistic="growth", window_seconds=540, min_samples=10
    )
    rule.channels.set([NotificationChannel.objects.create(name="hook", kind="webhook", url=f"{base}/hook")])
    for ids in engine.group(engine.evaluate(now=NOW)):
        delivery.deliver(ids)
    assert list(rule.states.filter(state="firing").values_list("subject", flat=True)) == ["agent-3"]
    text = json.dumps(json.loads(hook.requests[0]["body"]))
    assert "agent-3" in text and "%/min against a median of" in text
