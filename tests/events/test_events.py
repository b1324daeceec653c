"""Events: which pages' charts mark which events, and the admin's read-only list."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from perfdash.api.models import ApiToken
from perfdash.events.models import Event


@pytest.fixture
def events(db) -> None:
    token = ApiToken.issue("deployer", ["ingest"])[0]
    now = datetime.now(UTC)
    for i, (title, kind, tags) in enumerate(
        [
            ("everywhere", "note", {"version": "1.3.0"}),
            ("node-1 deploy", "deploy", {"node": "node-1"}),
            ("node-2 deploy", "deploy", {"node": "node-2"}),
            ("agent-7 config", "config", {"agent": "agent-7"}),
            ("agent-7 on node-1", "config", {"node": "node-1", "agent": "agent-7"}),
        ]
    ):
        ts = now - timedelta(minutes=i + 1)
        Event.objects.create(ts=ts, kind=kind, title=title, tags=tags, token=token)


def titles(**page: str) -> list[str]:
    now = time.time()
    return [e["title"] for e in Event.between(now - 3600, now, **page)]


def test_the_fleet_shows_every_event_newest_first(events):
    assert titles() == ["everywhere", "node-1 deploy", "node-2 deploy", "agent-7 config", "agent-7 on node-1"]


def test_a_node_shows_its_own_events_and_those_of_no_node(events):
    assert titles(node="node-1") == ["everywhere", "node-1 deploy", "agent-7 config", "agent-7 on node-1"]
    assert titles(node="node-9") == ["everywhere", "agent-7 config"]


def test_an_agent_shows_its_own_events_and_those_of_no_agent_and_no_other_node(events):
    assert titles(agent="agent-7") == ["everywhere", "agent-7 config"]
    assert titles(agent="agent-7", node="node-1") == [
        "everywhere",
        "node-1 deploy",
        "agent-7 config",
        "agent-7 on node-1",
    ]
    assert titles(agent="agent-8") == ["everywhere"]


def test_kind_window_and_limit_narrow_the_list(events):
    assert titles(kind="deploy") == ["node-1 deploy", "node-2 deploy"]
    assert titles(limit=2) == ["everywhere", "node-1 deploy"]
    now = time.time()
    assert [e["title"] for e in Event.between(now - 150, now)] == ["everywhere", "node-1 deploy"]


def test_the_admin_lists_events_by_kind_and_never_adds_changes_or_deletes_them(admin_client, events):
    listing = admin_client.get("/admin/events/event/?kind__exact=deploy")
    assert listing.status_code == 200
    assert b"node-1 deploy" in listing.content and b"agent-7 config" not in listing.content
    assert b"/admin/events/event/add/" not in listing.content
    assert admin_client.get("/admin/events/event/add/").status_code == 403
    row = Event.objects.get(title="everywhere")
    url = f"/admin/events/event/{row.pk}"
    shown = admin_client.get(f"{url}/change/")
    assert shown.status_code == 200 and b'name="_save"' not in shown.content
    assert admin_client.post(f"{url}/change/", {"title": "edited", "kind": "note"}).status_code == 403
    assert admin_client.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
    row.refresh_from_db()
    assert row.title == "everywhere"


VERIFICATION = {
    "version": "1.3.0",
    "against": "1.2.0",
    "how": "canary",
    "node": "",
    "a": {"label": "version 1.2.0", "version": "1.2.0", "node": "", "from": "x", "to": "y"},
    "b": {"label": "version 1.3.0", "version": "1.3.0", "node": "", "from": "x", "to": "y"},
    "metrics": {
        "agent_response_ms": {
            "verdict": "slower",
            "summary": "version 1.3.0 is slower than version 1.2.0: p95 2.31 s vs 1.98 s, +17 %",
        }
    },
    "verdict": "slower",
    "notes": [],
}


def test_a_verified_deploy_carries_its_verification_to_the_read_api(client, events, read_token):
    Event.objects.filter(title="node-1 deploy").update(
        verification=VERIFICATION, verified_at=datetime.now(UTC)
    )
    now = time.time()
    rows = {e["title"]: e for e in Event.between(now - 3600, now)}
    assert rows["node-1 deploy"]["verification"] == VERIFICATION
    assert rows["node-2 deploy"]["verification"] is None and rows["everywhere"]["verification"] is None

    r = client.get("/api/v1/events?kind=deploy", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert r.status_code == 200
    shown = {e["title"]: e["verification"] for e in r.json()["events"]}
    assert shown == {"node-1 deploy": VERIFICATION, "node-2 deploy": None}


def test_the_admin_shows_a_deploys_verification_in_words(admin_client, events):
    row = Event.objects.get(title="node-1 deploy")
    Event.objects.filter(pk=row.pk).update(verification=VERIFICATION, verified_at=datetime.now(UTC))
    listing = admin_client.get("/admin/events/event/?kind__exact=deploy")
    assert b"slower against 1.2.0 (canary)" in listing.content
    page = admin_client.get(f"/admin/events/event/{row.pk}/change/").content.decode()
    assert "slower against 1.2.0 (canary): version 1.3.0 against version 1.2.0" in page
    assert "agent_response_ms: version 1.3.0 is slower than version 1.2.0: p95 2.31 s vs 1.98 s" in page
