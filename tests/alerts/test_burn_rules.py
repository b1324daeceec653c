"""Burn-rate rules: an SLO that burns its budget fast pages (and a slow burn does not), through
the same state machine, channels and outbox; the message gives the budget left."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from perfdash.alerts import delivery, engine
from perfdash.alerts.models import AlertRule, NotificationChannel
from perfdash.detect.models import SLO
from tests.detect.conftest import seeded  # noqa: F401 (the fixture)
from tests.detect.test_slos import DAY, HOUR, NOW, responses

RESPONSES = "95 % of responses within 2 s"
pytestmark = pytest.mark.usefixtures("seeded")


def test_each_seeded_slo_has_a_paging_and_a_ticket_rule(db):
    rules = AlertRule.objects.filter(kind="burn", slo__name=RESPONSES)
    assert sorted(rules.values_list("severity", flat=True)) == ["critical", "warning"]


def test_a_burn_rule_needs_its_slo_and_sets_the_rest(db):
    with pytest.raises(ValidationError, match="SLO"):
        AlertRule(name="x", kind="burn", threshold=5).full_clean()
    rule = AlertRule(name="x", kind="burn", slo=SLO.objects.get(name=RESPONSES), threshold=7, agent="a")
    rule.full_clean()
    assert (rule.metric, rule.threshold, rule.comparison, rule.agent) == ("agent_response_ms", 1.0, "gte", "")


def only_burn_rules_to(base: str) -> None:
    channel = NotificationChannel.objects.create(name="hook", kind="webhook", url=f"{base}/hook")
    AlertRule.objects.exclude(kind="burn").update(enabled=False)
    for rule in AlertRule.objects.filter(kind="burn"):
        rule.channels.set([channel])


def firing() -> list[str]:
    return sorted(
        AlertRule.objects.filter(kind="burn", states__state="firing").values_list("name", flat=True)
    )


def test_a_slow_burn_opens_a_ticket_and_does_not_page(db, receiver):
    hook, base = receiver
    responses(4 * DAY, 40_000, 0.07)  # 1.4x the budget, for days
    only_burn_rules_to(base)
    for ids in engine.group(engine.evaluate(now=NOW)):
        delivery.deliver(ids)
    assert firing() == [f"{RESPONSES}: burns its error budget (ticket)"]
    assert [json.loads(r["body"])["severity"] for r in hook.requests] == ["warning"]


def test_a_fast_burn_pages_once_with_the_budget_left(db, receiver):
    hook, base = receiver
    responses(2 * DAY, 20_000, 0.01)
    responses(2 * HOUR, 5000, 1.0, offset=30)
    only_burn_rules_to(base)
    for ids in engine.group(engine.evaluate(now=NOW)):
        delivery.deliver(ids)
    # Burning this fast spends the slow pair's share too: the ticket opens with the page.
    assert firing() == [
        f"{RESPONSES}: burns its error budget (ticket)",
        f"{RESPONSES}: burns its error budget fast (page)",
    ]
    pages = [json.loads(r["body"]) for r in hook.requests if json.loads(r["body"])["severity"] == "critical"]
    assert len(pages) == 1
    body = pages[0]
    assert body["kind"] == "burn" and body["severity"] == "critical"
    assert body["summary"].startswith(f"SLO {RESPONSES}: -") and "of the error budget left" in body["summary"]
    assert "1h 1" in body["summary"] and body["dashboard_url"].endswith("/slos/")
    assert engine.evaluate(now=NOW + 60) == []  # still burning: nothing new
