"""Forecast rules: "projected to reach its limit within N days", through the same state
machine, channels and outbox as threshold rules."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from perfdash.alerts import delivery, engine
from perfdash.alerts.models import AlertEvent, AlertRule, AlertState, NotificationChannel
from perfdash.alerts.tasks import deliver
from perfdash.api.models import ApiToken
from perfdash.dashboard import panels
from perfdash.forecasting import capacity
from perfdash.forecasting.models import CapacityForecast, CapacityTarget
from tests.conftest import start_worker, wait_until
from tests.forecasting.conftest import NOW, Fleet


@pytest.fixture
def fitted(clean_tables):
    """node-1 reaches 1000 agents in about 3.4 days; node-2 holds 300."""
    AlertRule.objects.all().delete()
    fleet = Fleet(ApiToken.issue("history", ["ingest"])[0].id)
    fleet.hourly("active_agents", "node-1", "collector", 168, lambda ago: 500 + 2 * (168 - ago))
    fleet.hourly("active_agents", "node-2", "collector", 168, lambda ago: 300 + 0 * ago)
    fleet.store()
    capacity.refit(now=NOW)
    return CapacityTarget.objects.get(kind="node_agents")


def rule_for(target: CapacityTarget, days: float, **extra) -> AlertRule:
    rule = AlertRule(
        name=f"{target} within {days} days", kind="forecast", capacity_target=target, threshold=days
    )
    for k, v in extra.items():
        setattr(rule, k, v)
    rule.full_clean()
    rule.save()
    return rule


def firing(rule: AlertRule) -> dict[str, float]:
    return dict(rule.states.filter(state="firing").values_list("subject", "value"))


def test_a_forecast_rule_is_checked_and_completed_from_its_target(fitted):
    with pytest.raises(ValidationError, match="capacity target"):
        AlertRule(name="x", kind="forecast", threshold=7).full_clean()
    with pytest.raises(ValidationError, match="horizon"):
        AlertRule(name="x", kind="forecast", capacity_target=fitted, threshold=45).full_clean()
    with pytest.raises(ValidationError, match="metric"):
        AlertRule(name="x", threshold=7).full_clean()  # a threshold rule still needs its metric

    rule = rule_for(fitted, 7)
    assert (rule.scope, rule.comparison, rule.no_data, rule.min_samples) == ("node", "lte", "keep", 1)
    fleet_rule = rule_for(CapacityTarget.objects.get(kind="fleet_memory"), 7)
    assert fleet_rule.scope == "fleet"


def test_it_fires_for_the_node_projected_to_cross_within_the_days_and_resolves_when_that_changes(fitted):
    soon, never = rule_for(fitted, 7), rule_for(fitted, 2)

    engine.evaluate(now=NOW)

    assert firing(soon).keys() == {"node-1"}
    assert firing(soon)["node-1"] == pytest.approx(3.43, abs=0.2)
    assert firing(never) == {}
    shown = panels.firing_alerts(panels.View())  # the overview's firing-alerts table
    assert [(a["subject"], a["shown"]["threshold"]) for a in shown] == [("node-1", "7 d")]
    assert shown[0]["shown"]["value"].startswith("3.") and shown[0]["shown"]["value"].endswith(" d")
    # A later refit no longer sees a crossing within the horizon: the alert resolves.
    CapacityForecast.objects.filter(subject="node-1").update(crossing_at=None)
    engine.evaluate(now=NOW + 60)
    assert firing(soon) == {}
    assert list(AlertEvent.objects.filter(rule=soon).values_list("to_state", flat=True)) == [
        "resolved",
        "firing",
    ]


def test_no_forecast_changes_nothing(fitted):
    rule = rule_for(fitted, 7)
    engine.evaluate(now=NOW)
    CapacityForecast.objects.filter(subject="node-1").update(ok=False, reason="not enough data")

    engine.evaluate(now=NOW + 60)

    assert firing(rule).keys() == {"node-1"}
    assert AlertState.objects.filter(rule=rule).count() == 1


def test_the_preview_shows_the_rule_as_it_stands_now(fitted):
    rule = AlertRule(name="preview", kind="forecast", capacity_target=fitted, threshold=7)
    rule.full_clean()

    changes = engine.preview(rule, now=NOW)

    assert [(c.subject, c.event) for c in changes] == [("node-1", "firing")]


@pytest.mark.slow
def test_the_email_says_when_and_links_to_the_capacity_page(fitted, mailbox, settings, tmp_path):
    mail = NotificationChannel.objects.create(name="planners", kind="email", recipients="plan@example.com")
    rule = rule_for(fitted, 7)
    rule.channels.set([mail])
    worker = start_worker(
        tmp_path, "notify", queues="notify", EMAIL_URL=f"smtp://127.0.0.1:{settings.EMAIL_PORT}"
    )
    try:
        for ids in engine.group(engine.evaluate(now=NOW)):
            deliver.delay(ids)
        wait_until(lambda: mailbox.messages, what="the forecast alert email")
    finally:
        worker.kill()
    text = mailbox.messages[0].content.decode()
    assert "projected time to limit of Active agents per node is 3." in text
    assert "node-1" in text and "/capacity/?node=node-1" in text
    assert delivery.dashboard_url(rule, ["node-1"]).endswith("/capacity/?node=node-1")
