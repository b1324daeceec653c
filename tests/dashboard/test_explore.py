"""The explorer's page and data on the real database: any metric, statistics, filters, groups,
ratios, "alert on this", and clear 400s for bad input."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from django.contrib.auth.models import User

from perfdash.alerts.models import AlertRule
from perfdash.api.models import ApiToken
from perfdash.dashboard import explore
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

SCRIPT = '<script>alert("x")</script>'


@pytest.fixture
def fleet(db):
    """Three agents' responses (agent-1 slow), tool calls, cache hits and misses, tokens and a
    custom gauge, all in the last minute."""
    token = ApiToken.issue("t", ["ingest"])[0]
    now = time.time()
    series = [
        ("agent_response_ms", "node-1", "agent-1", "{}"),
        ("agent_response_ms", "node-1", "agent-2", "{}"),
        ("agent_response_ms", "node-2", SCRIPT, "{}"),
        ("tool_execution_ms", "node-1", "agent-1", '{"tool":"web_search"}'),
        ("cache_hits_total", "node-1", "agent-1", "{}"),
        ("cache_misses_total", "node-1", "agent-1", "{}"),
        ("tokens_total", "node-1", "agent-1", "{}"),
        ("queue_depth", "node-1", "agent-1", '{"tool":"web_search"}'),
    ]
    counts = [30, 20, 10, 5, 15, 5, 4, 3]
    values = [2000.0, 500.0, 1000.0, 300.0, 1.0, 1.0, 250.0, 7.0]
    idx = np.repeat(np.arange(len(series), dtype=np.int32), counts)
    IngestedBatch.store(
        token.id,
        Batch("x", series, idx, np.full(len(idx), now - 30), np.repeat(values, counts)),
        now=now,
    )


@pytest.fixture
def staff(client, db):
    client.force_login(User.objects.create_user("staff", password="x" * 12, is_staff=True, is_superuser=True))
    return client


def test_the_explorer_needs_a_login(client, db):
    for path in ["/explore/", "/data/explore"]:
        r = client.get(path)
        assert r.status_code == 302 and r["Location"].startswith("/login/")


def test_the_page_offers_every_metric_seen_and_the_well_known_ones(viewer, fleet):
    r = viewer.get("/explore/?metric=queue_depth&stat=max")
    assert r.status_code == 200 and b"js/explore.js" in r.content
    assert {"queue_depth", "agent_response_ms", "memory_op_ms"} <= set(r.context["metrics"])
    assert r.context["view"].stats == ("max",)
    assert b'value="max" checked' in r.content
    assert r.context["tags"]["tool"] == ["web_search"] and r.context["tags"]["model"] == []


def test_the_nav_links_to_the_explorer(viewer, fleet):
    assert b'href="/explore/"' in viewer.get("/").content


def test_a_latency_metric_has_its_series_histogram_and_statistics(viewer, fleet):
    data = viewer.get("/data/explore?metric=agent_response_ms&stat=p50&stat=p95&window=5m").json()
    assert data["kind"] == "latency" and data["seen"] and data["stats"] == ["p50", "p95"]
    assert data["units"] == {"p50": "ms", "p95": "ms"} and data["step"] == "1m"
    assert len(data["t"]) == 5 and [line["stat"] for line in data["lines"]] == ["p50", "p95"]
    assert sum(b["count"] for b in data["histogram"]["buckets"]) == 60
    [row] = data["rows"]
    assert row["name"] == "all" and row["count"] == 60
    assert row["values"]["p95"] == pytest.approx(2000, rel=0.01) and row["shown"]["p95"] == "2 s"
    assert any("within 1 %" in note for note in data["notes"])


def test_a_group_shows_the_top_n_the_others_together_and_all(viewer, fleet):
    data = viewer.get("/data/explore?metric=agent_response_ms&stat=p95&stat=count&group=agent&top=2").json()
    names = [(r["name"], r.get("others"), r["count"]) for r in data["rows"]]
    assert names == [("agent-1", None, 30), ("agent-2", None, 20), ("others", 1, 10), ("all", None, 60)]
    assert {line["group"] for line in data["lines"]} == {"agent-1", "agent-2", ""}
    assert data["rows"][2]["shown"]["p95"] == "1 s"
    agent_1 = next(line for line in data["lines"] if line["group"] == "agent-1" and line["stat"] == "count")
    assert sum(agent_1["values"]) == 30


def test_a_group_by_node_within_a_node_is_that_node_alone(viewer, fleet):
    data = viewer.get("/data/explore?metric=agent_response_ms&stat=count&group=node&node=node-2").json()
    assert [(r["name"], r["count"]) for r in data["rows"]] == [("node-2", 10), ("all", 10)]


def test_filters_narrow_the_data_with_the_read_apis_names(viewer, fleet):
    node = viewer.get("/data/explore?metric=agent_response_ms&stat=count&node=node-2").json()
    assert node["rows"][0]["count"] == 10
    agent = viewer.get("/data/explore?metric=agent_response_ms&stat=count&agent=agent-2").json()
    assert agent["rows"][0]["count"] == 20
    tool = viewer.get("/data/explore?metric=tool_execution_ms&stat=p50&tag.tool=web_search").json()
    assert tool["rows"][0]["count"] == 5
    other = viewer.get("/data/explore?metric=tool_execution_ms&tag.tool=calculator").json()
    assert other["rows"] == [] and other["seen"]


def test_a_counter_is_drawn_as_its_values_per_second(viewer, fleet):
    data = viewer.get("/data/explore?metric=tokens_total&window=5m").json()
    assert data["stats"] == ["rate"] and data["units"] == {"rate": "/s"}
    [row] = data["rows"]
    step_sum = sum(v or 0 for v in data["lines"][0]["values"]) * 60
    assert step_sum == pytest.approx(1000)  # 4 points of 250 tokens, per 60 s step
    assert row["values"]["rate"] > row["count"] / 300  # values per second, not points
    assert data["alert"]["url"] is None and "points per second" in data["alert"]["why"]


def test_a_ratio_is_one_of_a_fixed_set(viewer, fleet):
    data = viewer.get("/data/explore?ratio=hit_rate&window=5m").json()
    assert data["kind"] == "ratio" and data["rows"][0]["values"]["ratio"] == pytest.approx(15 / 20)
    assert data["rows"][0]["shown"]["ratio"] == "75 %" and data["rows"][0]["count"] == 20
    assert data["count_name"] == "lookups"
    assert [v for v in data["lines"][0]["values"] if v is not None] == [pytest.approx(0.75)]
    tokens = viewer.get("/data/explore?ratio=tokens_per_response&window=5m").json()
    assert tokens["rows"][0]["values"]["ratio"] == pytest.approx(1000 / 60)
    assert set(explore.RATIOS) == {"hit_rate", "error_ratio", "tokens_per_response"}


@pytest.fixture
def cache_fleet(db):
    """Cache lookups tagged by tool and model: web_search on m-large hits 14 of 19, the
    calculator on m-small once in one lookup, and the fetcher on m-small 2 of 10."""
    token = ApiToken.issue("t", ["ingest"])[0]
    now = time.time()
    series = [
        ("cache_hits_total", "node-1", "agent-1", '{"model":"m-large","tool":"web_search"}'),
        ("cache_misses_total", "node-1", "agent-1", '{"model":"m-large","tool":"web_search"}'),
        ("cache_hits_total", "node-2", "agent-2", '{"model":"m-small","tool":"calculator"}'),
        ("cache_hits_total", "node-2", "agent-3", '{"model":"m-small","tool":"fetch"}'),
        ("cache_misses_total", "node-2", "agent-3", '{"model":"m-small","tool":"fetch"}'),
    ]
    counts = [14, 5, 1, 2, 8]
    idx = np.repeat(np.arange(len(series), dtype=np.int32), counts)
    IngestedBatch.store(
        token.id, Batch("c", series, idx, np.full(len(idx), now - 30), np.ones(len(idx))), now=now
    )


def test_a_ratio_grouped_by_a_tag_has_a_line_and_a_row_per_group(viewer, cache_fleet):
    data = viewer.get("/data/explore?ratio=hit_rate&group=tool&window=5m").json()
    rows = {r["name"]: r for r in data["rows"]}
    # Ranked by lookups; one lookup is too few for a rate, not a hit rate of 100 %.
    assert list(rows) == ["web_search", "fetch", "calculator", "all"]
    assert (
        rows["web_search"]["values"]["ratio"] == pytest.approx(14 / 19) and rows["web_search"]["count"] == 19
    )
    assert rows["fetch"]["shown"]["ratio"] == "20 %"
    assert rows["calculator"]["values"]["ratio"] is None and rows["calculator"]["count"] == 1
    assert rows["calculator"]["shown"]["ratio"] == "too few lookups (1 < 10)"
    assert rows["all"]["values"]["ratio"] == pytest.approx(17 / 30)
    lines = {line["group"]: [v for v in line["values"] if v is not None] for line in data["lines"]}
    assert lines == {
        "web_search": [pytest.approx(14 / 19)],
        "fetch": [pytest.approx(0.2)],
        "calculator": [],
        "": [pytest.approx(17 / 30)],
    }
    assert any("fewer than 10 lookups" in note for note in data["notes"])


def test_a_ratio_groups_by_model_node_or_agent_with_the_others_together(viewer, cache_fleet):
    by_model = viewer.get("/data/explore?ratio=hit_rate&group=model&window=5m").json()
    shown = [(r["name"], r["count"], r["shown"]["ratio"]) for r in by_model["rows"]]
    assert shown == [("m-large", 19, "73.7 %"), ("m-small", 11, "27.3 %"), ("all", 30, "56.7 %")]
    by_agent = viewer.get("/data/explore?ratio=hit_rate&group=agent&top=1&window=5m").json()
    shown = [(r["name"], r.get("others"), r["count"]) for r in by_agent["rows"]]
    assert shown == [("agent-1", None, 19), ("others", 2, 11), ("all", None, 30)]
    assert {line["group"] for line in by_agent["lines"]} == {"agent-1", ""}
    by_node = viewer.get("/data/explore?ratio=hit_rate&group=node&node=node-2&window=5m").json()
    assert [(r["name"], r["count"]) for r in by_node["rows"]] == [("node-2", 11), ("all", 11)]
    assert by_node["query"]["group"] == "node" and by_node["query"]["ratio"] == "hit_rate"


def test_a_ratio_group_without_points_in_the_window_is_no_row(viewer, cache_fleet):
    token = ApiToken.issue("old", ["ingest"])[0]
    now = time.time()
    series = [("cache_hits_total", "node-1", "agent-1", '{"tool":"yesterday"}')]
    old = Batch("o", series, np.zeros(20, np.int32), np.full(20, now - 2 * 3600), np.ones(20))
    IngestedBatch.store(token.id, old, now=now)
    names = [
        r["name"] for r in viewer.get("/data/explore?ratio=hit_rate&group=tool&window=5m").json()["rows"]
    ]
    assert names == ["web_search", "fetch", "calculator", "all"]
    names = [
        r["name"] for r in viewer.get("/data/explore?ratio=hit_rate&group=tool&window=3h").json()["rows"]
    ]
    assert names[0] == "yesterday"


def test_a_ratio_group_without_a_denominator_says_so(viewer, fleet):
    token = ApiToken.issue("e", ["ingest"])[0]
    now = time.time()
    series = [("errors_total", "node-1", "agent-1", '{"tool":"web_search"}')]
    IngestedBatch.store(
        token.id, Batch("e", series, np.zeros(3, np.int32), np.full(3, now - 30), np.ones(3)), now=now
    )
    rows = viewer.get("/data/explore?ratio=error_ratio&group=tool&window=5m").json()["rows"]
    # Responses carry no tool tag: no ratio for the tool, only for all.
    assert [(r["name"], r["shown"]["ratio"]) for r in rows] == [
        ("web_search", "too few responses (0 < 10)"),
        ("all", "0.05"),
    ]


def test_a_ratio_of_too_few_events_has_no_value_rather_than_0_or_100_percent(viewer, cache_fleet):
    data = viewer.get("/data/explore?ratio=hit_rate&tag.tool=calculator&window=5m").json()
    [row] = data["rows"]
    assert row["count"] == 1 and row["values"]["ratio"] is None
    assert row["shown"]["ratio"] == "too few lookups (1 < 10)"
    assert [v for v in data["lines"][0]["values"] if v is not None] == []


def test_tokens_group_by_their_type_a_default_dimension_tag(viewer, db):
    token = ApiToken.issue("t", ["ingest"])[0]
    now = time.time()
    series = [
        ("tokens_total", "node-1", "agent-1", '{"model":"m","type":"input"}'),
        ("tokens_total", "node-1", "agent-1", '{"model":"m","type":"output"}'),
    ]
    idx = np.array([0, 0, 1], dtype=np.int32)
    IngestedBatch.store(
        token.id, Batch("t", series, idx, np.full(3, now - 30), np.array([300.0, 300.0, 120.0])), now=now
    )
    data = viewer.get("/data/explore?metric=tokens_total&stat=sum&group=type&window=5m").json()
    assert [(r["name"], r["values"]["sum"]) for r in data["rows"]] == [
        ("input", 600),
        ("output", 120),
        ("all", 720),
    ]
    output = viewer.get("/data/explore?metric=tokens_total&stat=sum&tag.type=output&window=5m").json()
    assert output["rows"][0]["values"]["sum"] == 120


def test_a_metric_not_seen_yet_is_said_not_an_error(viewer, fleet):
    data = viewer.get("/data/explore?metric=not_yet_ms").json()
    assert data["seen"] is False and data["rows"] == [] and data["lines"] == []


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("metric=agent_response_ms&stat=p42", "stat"),
        ("metric=agent_response_ms&window=forever", "window"),
        ("metric=agent_response_ms&window=900d", "window"),
        ("metric=agent_response_ms&window=1h&step=7m", "step"),
        ("metric=agent_response_ms&window=7d&step=1m", "step"),
        ("metric=agent_response_ms&group=colour", "group"),
        ("metric=agent_response_ms&group=agent&top=0", "top"),
        ("metric=agent_response_ms&group=agent&top=many", "top"),
        ("metric=agent_response_ms&tag.colour=red", "tag.colour"),
        ("metric=agent_response_ms&tag.tool=a&tag.model=b", "tag.model"),
        ("metric=tool_execution_ms&tag.tool=a&group=model", "group"),
        ("ratio=golden", "ratio"),
        ("ratio=hit_rate&group=colour", "group"),
        ("ratio=hit_rate&group=agent&top=0", "top"),
        ("metric=agent_response_ms&node=a%00b", "node"),
        ("metric=a%01b", "metric"),
        ("metric=agent_response_ms&colour=red", "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(viewer, fleet, query, param):
    r = viewer.get(f"/data/explore?{query}")
    assert r.status_code == 400, r.content
    assert r.json()["param"] == param
    assert viewer.get(f"/explore/?{query}").status_code == 400


def test_alert_on_this_prefills_the_rule_form_with_the_view_and_its_value(staff, fleet):
    view = "metric=agent_response_ms&stat=p95&window=1h&node=node-1&group=agent"
    data = staff.get(f"/data/explore?{view}").json()
    url = data["alert"]["url"]
    assert url.startswith("/admin/alerts/alertrule/add/?")
    given = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    assert given["metric"] == "agent_response_ms" and given["statistic"] == "p95"
    assert given["node"] == "node-1" and given["scope"] == "agent" and given["window_seconds"] == "3600"
    assert given["threshold"] == data["alert"]["threshold"]
    form = staff.get(url)
    assert form.status_code == 200
    assert form.context["adminform"].form.initial["threshold"] == given["threshold"]
    # Saved as it is prefilled, the rule holds the value in the metric's base unit.
    required = {
        "comparison": "gt",
        "no_data": "keep",
        "severity": "warning",
        "kind": "threshold",
        "min_samples": "1",
        "for_seconds": "0",
        "enabled": "on",
        "send_resolved": "on",
    }
    saved = staff.post("/admin/alerts/alertrule/add/", {**given, **required})
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    rule = AlertRule.objects.latest("id")
    assert rule.threshold == pytest.approx(data["rows"][-1]["values"]["p95"], rel=1e-3)
    assert (rule.metric, rule.statistic, rule.node) == ("agent_response_ms", "p95", "node-1")
    assert rule.scope == "agent" and rule.window_seconds == 3600


def test_a_ratio_or_a_sum_has_no_alert_and_says_why(viewer, fleet):
    assert "ratio" in viewer.get("/data/explore?ratio=hit_rate").json()["alert"]["why"]
    assert "sum" in viewer.get("/data/explore?metric=agent_response_ms&stat=sum").json()["alert"]["why"]


def test_names_from_agents_stay_data(viewer, fleet):
    data = viewer.get("/data/explore?metric=agent_response_ms&group=agent").json()
    assert SCRIPT in [r["name"] for r in data["rows"]]
    page = viewer.get(f"/explore/?metric=agent_response_ms&agent={SCRIPT}")
    assert SCRIPT.encode() not in page.content


def test_the_default_step_gives_a_readable_number_of_points():
    assert explore.default_step(300) == 60 and explore.default_step(86400) == 1800
    assert explore.default_step(7 * 86400) == 3 * 3600 and explore.default_step(4 * 86400) == 3600


@pytest.mark.django_db(transaction=True)
async def test_the_live_socket_sends_the_explorers_view_with_every_statistic():
    import asyncio

    from channels.layers import get_channel_layer

    from perfdash.live.publish import GROUP
    from tests.dashboard.test_consumers import communicator, session_cookie

    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, path="/ws/live/?page=explore&metric=agent_response_ms&stat=p50&stat=p99")
    connected, _ = await ws.connect()
    assert connected
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": []})
    update = await ws.receive_json_from(timeout=10)
    await ws.disconnect()
    assert update["type"] == "update" and update["data"]["stats"] == ["p50", "p99"]
    assert update["data"]["view"]["page"] == "explore" and "metrics" in update["data"]


@pytest.mark.django_db(transaction=True)
async def test_a_bad_explorer_view_closes_the_socket_as_a_bad_request():
    import asyncio

    from perfdash.dashboard.consumers import BAD_FILTER
    from tests.dashboard.test_consumers import communicator, session_cookie

    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, path="/ws/live/?page=explore&metric=agent_response_ms&stat=p42")
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_output(timeout=5))["code"] == BAD_FILTER


@pytest.mark.parametrize("window", ["5m", "90m", "24h", "7d", "30d"])
def test_every_window_reads_with_its_default_step(viewer, fleet, window):
    data = viewer.get(f"/data/explore?metric=agent_response_ms&stat=p95&stat=count&window={window}").json()
    assert data["rows"][-1]["count"] == 60
    assert sum(v for line in data["lines"] if line["stat"] == "count" for v in line["values"]) == 60
