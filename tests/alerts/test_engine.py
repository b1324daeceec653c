"""Rules evaluated against real rollups in PostgreSQL, with time travel through `now`."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from perfdash.alerts import engine
from perfdash.alerts.models import AlertEvent, AlertRule, AlertState, Silence
from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

NOW = time.time() // 60 * 60 + 30  # mid-minute: windows line up with what the test stored


def store(values: dict[str, float], at: float, n: int = 30, metric: str = "agent_response_ms") -> None:
    """`n` points of `value` for each agent, `at` seconds (Unix)."""
    token = ApiToken.objects.first() or ApiToken.issue("t", ["ingest"])[0]
    series = [(metric, "node-1", agent, "{}") for agent in values]
    idx = np.repeat(np.arange(len(series), dtype=np.int32), n)
    vals = np.repeat(np.array(list(values.values()), dtype=np.float64), n)
    IngestedBatch.store(
        token.id, Batch(f"b{at}-{metric}-{len(values)}", series, idx, np.full(len(idx), at), vals), now=NOW
    )


def rule(**kw) -> AlertRule:
    defaults = dict(
        name="slow",
        metric="agent_response_ms",
        statistic="p95",
        comparison="gt",
        threshold=2000,
        window_seconds=120,
        min_samples=10,
    )
    return AlertRule.objects.create(**{**defaults, **kw})


def events(r: AlertRule) -> list[tuple[str, str]]:
    return list(r.events.order_by("id").values_list("subject", "to_state"))


@pytest.fixture(autouse=True)
def no_default_rules(db):
    AlertRule.objects.all().delete()


def test_a_fleet_rule_fires_and_resolves_on_real_data():
    r = rule()
    store({"a1": 500}, NOW - 600)
    assert engine.evaluate(r.id, now=NOW - 590) == []
    store({"a1": 3000}, NOW - 300)
    fired = engine.evaluate(r.id, now=NOW - 290)
    assert len(fired) == 1
    event = AlertEvent.objects.get(id=fired[0])
    assert (event.from_state, event.to_state, event.threshold) == ("inactive", "firing", 2000)
    assert event.value == pytest.approx(3000, rel=0.01)
    assert engine.evaluate(r.id, now=NOW - 280) == []  # still firing: nothing new
    store({"a1": 400}, NOW - 60)
    assert len(engine.evaluate(r.id, now=NOW)) == 1
    assert events(r) == [("", "firing"), ("", "resolved")]
    assert AlertState.objects.get(rule=r).state == "inactive"


def test_a_per_agent_rule_fires_for_each_offender_and_groups_them_into_one_message():
    r = rule(scope="agent", statistic="max", threshold=100e6, metric="agent_memory_bytes", min_samples=1)
    store({"a1": 150e6, "a2": 50e6, "a3": 120e6, "a4": 101e6}, NOW - 30, metric="agent_memory_bytes")
    fired = engine.evaluate(r.id, now=NOW)
    assert sorted(events(r)) == [("a1", "firing"), ("a3", "firing"), ("a4", "firing")]
    assert engine.group(fired) == [sorted(fired)]


def test_silenced_alerts_change_state_but_notify_nobody():
    r = rule()
    at = datetime.fromtimestamp(NOW, UTC)
    Silence.objects.create(rule=r, starts_at=at - timedelta(hours=1), ends_at=at + timedelta(hours=1))
    store({"a1": 3000}, NOW - 30)
    assert engine.evaluate(r.id, now=NOW) == []
    assert AlertEvent.objects.get(rule=r).silenced
    assert AlertState.objects.get(rule=r).state == "firing"


def test_an_alert_that_fired_during_a_silence_is_announced_when_the_silence_ends():
    r = rule()  # no repeat interval
    at = datetime.fromtimestamp(NOW, UTC)
    Silence.objects.create(rule=r, starts_at=at - timedelta(hours=1), ends_at=at + timedelta(seconds=30))
    store({"a1": 3000}, NOW - 30)
    assert engine.evaluate(r.id, now=NOW) == []
    assert engine.evaluate(r.id, now=NOW + 20) == []  # still silenced: nothing, not even an event
    announced = engine.evaluate(r.id, now=NOW + 40)
    # announced as a reminder of an alert firing all along, not as a new one
    assert [(e.from_state, e.to_state) for e in AlertEvent.objects.filter(id__in=announced)] == [
        ("firing", "repeat")
    ]
    assert engine.evaluate(r.id, now=NOW + 50) == []  # announced once


def test_a_rule_for_each_node_cannot_be_narrowed_to_one_agent():
    # per-node statistics cover all of a node's agents: an agent filter would be ignored silently
    with pytest.raises(ValidationError) as raised:
        AlertRule(name="x", metric="agent_response_ms", scope="node", agent="a1", threshold=1).full_clean()
    assert "agent" in raised.value.message_dict
    AlertRule(name="x", metric="agent_response_ms", scope="agent", node="node-1", threshold=1).full_clean()


def test_a_disabled_rule_is_not_evaluated():
    r = rule(enabled=False)
    store({"a1": 3000}, NOW - 30)
    assert engine.evaluate(r.id, now=NOW) == [] and not AlertEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_evaluators_at_once_record_one_transition(clean_tables):
    AlertRule.objects.all().delete()
    r = rule()
    store({"a1": 3000}, NOW - 30)
    results: list[list[int]] = []
    barrier = threading.Barrier(2)

    def evaluate() -> None:
        barrier.wait()
        results.append(engine.evaluate(r.id, now=NOW))
        connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(x) for x in results) == [0, 1]
    assert events(r) == [("", "firing")]


def test_changing_what_a_rule_watches_clears_its_old_states():
    r = rule()
    store({"a1": 3000}, NOW - 30)
    engine.evaluate(r.id, now=NOW)
    assert AlertState.objects.filter(rule=r, state="firing").exists()
    r.threshold = 2500  # same subjects: the state stays
    r.save()
    assert AlertState.objects.filter(rule=r).exists()
    r.scope = "agent"  # now it watches each agent: the fleet-wide state would never resolve
    r.save()
    assert not AlertState.objects.filter(rule=r).exists()


def test_a_rule_on_a_tag_no_longer_a_dimension_reads_as_no_data_and_the_others_still_run(settings):
    settings.DIMENSION_TAGS = ["tool", "region"]
    stale = rule(name="by region", tag_key="region", tag_value="eu")
    settings.DIMENSION_TAGS = ["tool"]
    healthy = rule(name="slow fleet")
    store({"a1": 3000}, NOW - 60)
    engine.evaluate(now=NOW)
    assert (events(healthy), events(stale)) == (
        [("", "firing")],
        [],
    )  # no data: kept
