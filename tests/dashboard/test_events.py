"""Event markers in the pages' data: the events of the page's window and scope, newest first,
at most 50, on every page with time charts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from perfdash.api.models import ApiToken
from perfdash.events.models import Event
from tests.dashboard.test_capacity_page import fitted  # noqa: F401 - a fixture


def made(title: str, ago: timedelta, tags: dict | None = None, kind: str = "deploy") -> Event:
    token = ApiToken.objects.first() or ApiToken.issue("deployer", ["ingest"])[0]
    ts = datetime.now(UTC) - ago
    return Event.objects.create(ts=ts, kind=kind, title=title, tags=tags or {}, token=token)


@pytest.fixture
def deploys(db) -> None:
    made("v1.2.0", timedelta(hours=3), {"version": "1.2.0"})
    made("v1.3.0 on node-2", timedelta(minutes=10), {"version": "1.3.0", "node": "node-2"})
    made("pool size 8", timedelta(minutes=2), kind="config")


def titles(viewer, path: str) -> list[str]:
    return [e["title"] for e in viewer.get(path).json()["events"]]


def test_the_overview_data_has_the_window_s_events_newest_first(viewer, deploys):
    events = viewer.get("/data/overview?window=1h").json()["events"]
    assert [e["title"] for e in events] == ["pool size 8", "v1.3.0 on node-2"]
    marker = events[1]
    assert marker["kind"] == "deploy" and marker["tags"] == {"version": "1.3.0", "node": "node-2"}
    assert marker["ts"] == pytest.approx(time.time() - 600, abs=30)  # Unix seconds, as the charts' times
    assert titles(viewer, "/data/overview?window=24h") == ["pool size 8", "v1.3.0 on node-2", "v1.2.0"]


def test_a_node_s_page_marks_its_own_events_and_the_untagged_ones(viewer, deploys):
    assert titles(viewer, "/data/overview?window=1h&node=node-2") == ["pool size 8", "v1.3.0 on node-2"]
    assert titles(viewer, "/data/overview?window=1h&node=node-1") == ["pool size 8"]
    assert titles(viewer, "/data/overview?window=1h&agent=agent-1") == ["pool size 8"]


def test_a_chart_gets_at_most_50_markers_the_newest(viewer, db):
    for i in range(60):
        made(f"note {i}", timedelta(seconds=10 + i), kind="note")
    shown = titles(viewer, "/data/overview?window=5m")
    assert shown == [f"note {i}" for i in range(50)]


def test_the_capacity_page_marks_the_events_of_its_charts_history(viewer, fitted):  # noqa: F811
    made("v1.2.0", timedelta(days=3), {"version": "1.2.0"})
    made("long ago", timedelta(days=40))
    assert titles(viewer, "/data/capacity") == ["v1.2.0"]
