"""The capacity page: its data from stored forecasts, the what-if growth, refit on demand,
and live redraws when a refit stores new forecasts."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from channels.layers import get_channel_layer

from perfdash.api.models import ApiToken
from perfdash.forecasting import capacity
from perfdash.lib.redis import client, key
from perfdash.live.publish import GROUP, forecasts_changed
from tests.conftest import server_env
from tests.dashboard.test_consumers import communicator, session_cookie
from tests.forecasting.conftest import NOW, Fleet

SCRIPT = '<script>alert("x")</script>'


@pytest.fixture
def fitted(clean_tables):
    """16 days in which node-1 gains an agent an hour from 500; a node with a script in its
    name holds 300."""
    fleet = Fleet(ApiToken.issue("history", ["ingest"])[0].id)
    fleet.hourly("active_agents", "node-1", "collector", 384, lambda ago: 500 + (384 - ago))
    fleet.hourly("active_agents", SCRIPT, "collector", 384, lambda ago: 300 + 0 * ago)
    fleet.store()
    capacity.refit(now=NOW)


def target(data: dict, kind: str) -> dict:
    return next(t for t in data["targets"] if t["kind"] == kind)


def test_the_page_needs_a_login(client, db):
    assert client.get("/capacity/").status_code == 302
    assert client.get("/data/capacity").status_code == 302
    assert client.post("/capacity/refit").status_code == 302


def test_a_viewer_sees_time_to_limit_and_the_recommendation(viewer, fitted):
    page = viewer.get("/capacity/")
    assert page.status_code == 200 and b"capacity.js" in page.content

    agents = target(viewer.get("/data/capacity").json(), "node_agents")

    assert agents["summary"].startswith("node-1 reaches 1,000 agents in 4.")
    assert [s["subject"] for s in agents["subjects"]][:2] == ["node-1", ""]  # soonest first
    assert [c["subject"] for c in agents["charts"]] == ["", "node-1"]  # the fleet, then the worst node
    chart = agents["charts"][1]
    assert len(chart["history"]["t"]) == 384 and len(chart["forecast"]["upper95"]) == 30 * 24
    assert chart["crossing"]["earliest"] <= chart["crossing"]["at"] <= chart["crossing"]["latest"]
    rec = agents["recommendation"]
    assert rec["current"] == 2 and rec["nodes"] >= 3
    assert rec["text"].startswith(f"{rec['nodes']} nodes (now 2): add {rec['nodes'] - 2}")


def test_what_if_growth_brings_the_crossing_forward(viewer, fitted):
    plain = target(viewer.get("/data/capacity").json(), "node_agents")
    faster = target(viewer.get("/data/capacity?growth=25").json(), "node_agents")

    assert faster["subjects"][0]["days"] < plain["subjects"][0]["days"]
    assert faster["recommendation"]["nodes"] > plain["recommendation"]["nodes"]
    assert viewer.get("/data/capacity?growth=lots").json()["view"]["growth"] == 0


def test_a_node_can_be_chosen_and_names_stay_text(viewer, fitted):
    data = viewer.get("/data/capacity", {"node": SCRIPT}).json()
    assert target(data, "node_agents")["charts"][1]["subject"] == SCRIPT
    page = viewer.get("/capacity/", {"node": SCRIPT})
    assert SCRIPT.encode() not in page.content and b"&lt;script&gt;" in page.content


def test_refit_on_demand_is_queued_at_most_once_per_half_minute(viewer, fitted, redis_queue):
    client().delete(key("forecast-refit-queued"))
    first, second = viewer.post("/capacity/refit"), viewer.post("/capacity/refit")
    assert first.status_code == 202 and first.json() == {"queued": True}
    assert second.json() == {"queued": False}
    assert viewer.get("/capacity/refit").status_code == 405


REFIT_FROM_ANOTHER_PROCESS = (
    "import django; django.setup(); from perfdash.dashboard import views; print(views._queue_refit())"
)


def test_a_refit_queued_by_another_web_process_holds_this_one_back(viewer, fitted, redis_queue):
    client().delete(key("forecast-refit-queued"))
    other = subprocess.run(
        [sys.executable, "-c", REFIT_FROM_ANOTHER_PROCESS],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.stdout.strip().endswith("True"), other.stderr
    assert viewer.post("/capacity/refit").json() == {"queued": False}


async def test_a_refit_redraws_open_capacity_pages_and_new_points_do_not(fitted):
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, path="/ws/live/?page=capacity&growth=10")
    connected, _ = await ws.connect()
    assert connected
    first = await ws.receive_json_from(timeout=5)  # on connect: what is stored now
    assert target(first["data"], "node_agents")["subjects"]
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    assert await ws.receive_nothing(timeout=1.5)

    await asyncio.to_thread(forecasts_changed, 7)  # what the refit task calls
    message = await ws.receive_json_from(timeout=5)
    assert message["data"]["view"] == {"page": "capacity", "growth": 10.0, "node": ""}
    assert target(message["data"], "node_agents")["subjects"][0]["subject"] == "node-1"
    await ws.disconnect()


def test_times_to_limit_read_as_people_say_them():
    from perfdash.dashboard.capacity_page import _ahead

    # "in 0.0 days (80 % interval 0.0 to beyond the horizon days)" was how a near crossing read
    spans = [_ahead(d) for d in (None, 0.0, 0.02, 0.25, 4.23, 30.0)]
    assert spans == ["beyond the horizon", "now", "under an hour", "6 h", "4.2 days", "30 days"]
