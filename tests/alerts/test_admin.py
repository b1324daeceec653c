"""The alert admin: a rule previewed on real data before it is saved, thresholds typed and shown
in the metric's units, a test notification, and channel secrets kept out of sight."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from django.contrib.auth.models import Permission

from perfdash.alerts.models import AlertEvent, AlertRule, NotificationChannel
from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

SECRET = "/services/T1/B2/very-secret-token"


def slow_then_fast() -> None:
    """Agents answered in 3 s from 3 h ago to 2 h ago, then in 0.4 s."""
    token = ApiToken.issue("t", ["ingest"])[0]
    now = time.time()
    ts = np.arange(now - 3 * 3600, now, 20.0)
    values = np.where(ts < now - 2 * 3600, 3000.0, 400.0)
    series = [("agent_response_ms", "node-1", "agent-1", "{}")]
    IngestedBatch.store(token.id, Batch("h", series, np.zeros(len(ts), np.int32), ts, values), now=now)


def form_data(**over) -> dict:
    data = {
        "name": "Slow answers",
        "enabled": "on",
        "severity": "warning",
        "runbook_url": "",
        "kind": "threshold",
        "capacity_target": "",
        "metric": "agent_response_ms",
        "statistic": "p95",
        "scope": "fleet",
        "node": "",
        "agent": "",
        "tag_key": "",
        "tag_value": "",
        "window_seconds": "600",
        "min_samples": "1",
        "comparison": "gt",
        "threshold": "2000",
        "recovery_threshold": "",
        "for_seconds": "0",
        "no_data": "keep",
        "repeat_seconds": "",
        "send_resolved": "on",
    }
    return {**data, **over}


def test_a_rule_is_previewed_on_the_last_day_without_being_saved(admin_client):
    slow_then_fast()
    rules_before = AlertRule.objects.count()
    r = admin_client.post("/admin/alerts/alertrule/preview/", form_data())
    assert r.status_code == 200
    rows = r.context["changes"]
    assert [c.event for c in rows] == ["firing", "resolved"]
    assert rows[1].at.timestamp() - rows[0].at.timestamp() == pytest.approx(3600, abs=900)
    assert r.context["notifications"] == 2 and b"firing" in r.content
    assert AlertRule.objects.count() == rules_before and not AlertEvent.objects.exists()


def test_a_preview_of_an_invalid_rule_says_what_is_wrong(admin_client):
    r = admin_client.post("/admin/alerts/alertrule/preview/", form_data(recovery_threshold="2500"))
    assert r.status_code == 200 and "recovery_threshold" in r.context["errors"]


def test_the_change_form_offers_the_preview(admin_client):
    assert b"alertrule/preview/" in admin_client.get("/admin/alerts/alertrule/add/").content


def test_a_test_notification_reaches_the_channel(admin_client, receiver):
    slack, base = receiver
    channel = NotificationChannel.objects.create(name="chat", kind="slack", url=f"{base}{SECRET}")
    r = admin_client.post(
        "/admin/alerts/notificationchannel/",
        {"action": "send_test_notification", "_selected_action": [channel.pk]},
        follow=True,
    )
    assert b"test notification sent" in r.content
    assert len(slack.requests) == 1 and "Test notification" in json.loads(slack.requests[0]["body"])["text"]


def test_channel_secrets_are_masked_in_the_admin(admin_client):
    channel = NotificationChannel.objects.create(
        name="hook", kind="webhook", url=f"https://hooks.example.com{SECRET}", hmac_secret="hmac-very-secret"
    )
    assert SECRET.encode() not in admin_client.get("/admin/alerts/notificationchannel/").content
    form = admin_client.get(f"/admin/alerts/notificationchannel/{channel.pk}/change/").content
    assert SECRET.encode() not in form and b"hmac-very-secret" not in form
    admin_client.post(
        f"/admin/alerts/notificationchannel/{channel.pk}/change/",
        {
            "name": "hook renamed",
            "kind": "webhook",
            "recipients": "",
            "url": "",
            "hmac_secret": "",
            "enabled": "on",
            "disabled_reason": "",
        },
    )
    channel.refresh_from_db()
    assert channel.name == "hook renamed" and channel.url.endswith(SECRET)  # blank keeps the secret
    assert channel.hmac_secret == "hmac-very-secret"


def test_staff_add_a_forecast_rule_in_the_admin_with_only_its_target_and_days(admin_client):
    from perfdash.forecasting.models import CapacityTarget

    target = CapacityTarget.all_kinds()[0]  # active agents per node
    data = form_data(name="Nodes full within a week", kind="forecast", capacity_target=str(target.pk))
    data.update(metric="", threshold="7", comparison="gt", scope="fleet", no_data="alert")
    r = admin_client.post("/admin/alerts/alertrule/add/", data)

    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    rule = AlertRule.objects.get(name="Nodes full within a week")
    assert (rule.metric, rule.scope, rule.comparison, rule.no_data) == ("node_agents", "node", "lte", "keep")


def test_capacity_targets_are_all_listed_and_can_be_edited_but_not_added_or_deleted(admin_client):
    from perfdash.forecasting.models import CapacityTarget

    CapacityTarget.objects.all().delete()
    page = admin_client.get("/admin/forecasting/capacitytarget/")
    assert page.status_code == 200 and CapacityTarget.objects.count() == 5
    assert b"Active agents per node" in page.content and b"1000 agents" in page.content
    assert admin_client.get("/admin/forecasting/capacitytarget/add/").status_code == 403
    target = CapacityTarget.objects.get(kind="node_agents")
    assert admin_client.get(f"/admin/forecasting/capacitytarget/{target.pk}/delete/").status_code == 403
    r = admin_client.post(
        f"/admin/forecasting/capacitytarget/{target.pk}/change/",
        {
            "enabled": "on",
            "limit": "800",
            "node_capacity": "",
            "headroom": "0.3",
            "horizon_days": "14",
            "history_days": "28",
        },
    )
    assert r.status_code == 302
    target.refresh_from_db()
    assert (target.limit, target.headroom, target.horizon_days) == (800, 0.3, 14)
    assert target.limit_for("node-1", nodes=3) == 800 and target.limit_for("", nodes=3) == 2400


@pytest.mark.parametrize(
    ("metric", "statistic", "typed", "stored"),
    [
        ("agent_memory_bytes", "max", "100 MB", 100_000_000.0),
        ("agent_memory_bytes", "max", "100MB", 100_000_000.0),
        ("agent_memory_bytes", "max", "512 MiB", 512 * 2**20),
        ("agent_response_ms", "p95", "2 s", 2000.0),
        ("agent_response_ms", "p95", "2000", 2000.0),
        ("agent_response_ms", "p95", "2000 ms", 2000.0),
        ("agent_response_ms", "count", "20", 20.0),
        ("errors_total", "rate", "5/s", 5.0),
    ],
)
def test_staff_type_a_threshold_with_its_unit_and_it_is_stored_in_the_base_unit(
    admin_client, metric, statistic, typed, stored
):
    data = form_data(name="Typed", metric=metric, statistic=statistic, threshold=typed)
    r = admin_client.post("/admin/alerts/alertrule/add/", data)

    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    assert AlertRule.objects.get(name="Typed").threshold == stored


def test_the_recovery_threshold_takes_units_too(admin_client):
    data = form_data(
        name="Memory",
        metric="agent_memory_bytes",
        statistic="max",
        threshold="100 MB",
        recovery_threshold="90 MB",
    )
    assert admin_client.post("/admin/alerts/alertrule/add/", data).status_code == 302
    rule = AlertRule.objects.get(name="Memory")
    assert (rule.threshold, rule.recovery_threshold) == (100_000_000.0, 90_000_000.0)


@pytest.mark.parametrize(
    ("metric", "statistic", "typed", "says"),
    [
        ("agent_memory_bytes", "max", "2 s", "Give a size in bytes"),
        ("agent_response_ms", "p95", "100 MB", "Give a duration"),
        ("agent_response_ms", "count", "2 s", "Give a plain number"),
        ("agent_response_ms", "p95", "fast", "is not a number"),
    ],
)
def test_a_threshold_in_a_unit_the_metric_is_not_measured_in_is_refused_on_its_field(
    admin_client, metric, statistic, typed, says
):
    data = form_data(name="Wrong unit", metric=metric, statistic=statistic, threshold=typed)
    r = admin_client.post("/admin/alerts/alertrule/add/", data)

    assert r.status_code == 200
    errors = r.context["adminform"].form.errors
    assert says in " ".join(errors["threshold"]) and "metric" not in errors
    assert not AlertRule.objects.filter(name="Wrong unit").exists()


def test_the_rule_list_and_form_show_thresholds_with_units(admin_client):
    from perfdash.forecasting.models import CapacityTarget

    def rule(name: str, **fields) -> AlertRule:
        return AlertRule.objects.create(name=name, **{"metric": "agent_response_ms", **fields})

    memory = rule(
        "Memory", metric="agent_memory_bytes", statistic="max", threshold=1e8, recovery_threshold=9e7
    )
    rule("Slow", threshold=2000.0)
    rule("Sluggish", threshold=250.0)
    rule("Erratic", metric="errors_total", statistic="rate", threshold=5.0)
    rule("Full", kind="forecast", capacity_target=CapacityTarget.all_kinds()[0], threshold=7.0)

    page = admin_client.get("/admin/alerts/alertrule/").content.decode()
    for shown in ["100 MB", "2 s", "250 ms", "5/s", "7 d"]:
        assert f'<td class="field-threshold_shown">{shown}</td>' in page
    form = admin_client.get(f"/admin/alerts/alertrule/{memory.pk}/change/").content.decode()
    assert 'name="threshold" value="100 MB"' in form
    assert 'name="recovery_threshold" value="90 MB"' in form
    AlertEvent.objects.create(
        rule=memory, from_state="pending", to_state="firing", value=1.2e8, threshold=1e8
    )
    events = admin_client.get("/admin/alerts/alertevent/").content.decode()
    assert '<td class="field-value_shown">120 MB</td>' in events
    assert '<td class="field-threshold_shown">100 MB</td>' in events


def test_a_rule_saved_unchanged_keeps_its_thresholds(admin_client):
    rule = AlertRule.objects.create(name="Slow", metric="agent_response_ms", threshold=1234.5)
    form = admin_client.get(f"/admin/alerts/alertrule/{rule.pk}/change/").context["adminform"].form
    data = form_data(name="Slow", threshold=form.initial["threshold"])
    assert admin_client.post(f"/admin/alerts/alertrule/{rule.pk}/change/", data).status_code == 302
    rule.refresh_from_db()
    assert (form.initial["threshold"], rule.threshold) == ("1.2345 s", 1234.5)


def test_a_preview_shows_the_thresholds_in_the_metrics_units(admin_client):
    data = form_data(
        metric="agent_memory_bytes", statistic="max", threshold="100 MB", recovery_threshold="90 MB"
    )
    page = admin_client.post("/admin/alerts/alertrule/preview/", data).content.decode()
    assert "100 MB, recovering past 90 MB," in page and "100000000" not in page


def test_a_preview_shows_the_values_in_the_metrics_units_and_recovers_past_the_threshold_by_default(
    admin_client,
):
    slow_then_fast()
    page = admin_client.post("/admin/alerts/alertrule/preview/", form_data(threshold="2 s")).content.decode()
    assert "2 s, recovering past 2 s," in page
    firing, resolved = re.findall(r"<td>(firing|resolved)</td><td>([^<]*)</td>", page)
    assert firing == ("firing", "3 s")
    number, unit = resolved[1].split(" ")  # a percentile: 4 significant digits, not 17
    assert unit in {"ms", "s"} and len(number.replace(".", "")) <= 4


def test_only_staff_who_may_add_or_change_rules_may_preview_one(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x" * 12, is_staff=True)
    client.force_login(staff)
    assert client.post("/admin/alerts/alertrule/preview/", form_data()).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_alertrule"))
    assert client.post("/admin/alerts/alertrule/preview/", form_data()).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="change_alertrule"))
    assert client.post("/admin/alerts/alertrule/preview/", form_data()).status_code == 200
