"""Pages and their data: login required, viewers read, only staff configure, names escaped."""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.contrib.auth.models import User

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch
from tests.detect.conftest import leaking, peers  # noqa: F401 (the fixtures)

SCRIPT = '<script>alert("x")</script>'


@pytest.fixture
def fleet(db):
    token = ApiToken.issue("t", ["ingest"])[0]
    now = time.time()
    series = [
        ("agent_response_ms", "node-1", "agent-1", "{}"),
        ("tool_execution_ms", "node-1", "agent-1", '{"tool":"web_search"}'),
        ("llm_call_ms", "node-2", SCRIPT, '{"model":"m-large","provider":"acme"}'),
        ("agent_memory_bytes", "node-2", SCRIPT, "{}"),
        ("active_agents", "node-1", "collector", "{}"),
    ]
    idx = np.repeat(np.arange(5, dtype=np.int32), 20)
    values = np.concatenate(
        [np.full(20, 900.0), np.full(20, 300.0), np.full(20, 1500.0), np.full(20, 150e6), np.full(20, 2.0)]
    )
    IngestedBatch.store(token.id, Batch("f", series, idx, np.full(100, now - 30), values), now=now)


@pytest.mark.parametrize(
    "path", ["/", "/nodes/node-1/", "/agents/agent-1/", "/tools/", "/data/overview", "/compare/"]
)
def test_pages_need_a_login(client, db, path):
    r = client.get(path)
    assert r.status_code == 302 and r["Location"].startswith("/login/")


@pytest.mark.parametrize("path", ["/", "/nodes/node-1/", "/agents/agent-1/", "/tools/?window=24h"])
def test_a_viewer_sees_every_page(viewer, fleet, path):
    r = viewer.get(path)
    assert r.status_code == 200
    assert b"vendor/plotly.min.js" in r.content or b"tools.js" in r.content


def test_the_compare_page_offers_the_metrics_and_each_tags_values_that_exist(viewer, fleet):
    r = viewer.get("/compare/?metric=tool_execution_ms&window=1h")
    assert r.status_code == 200 and b"js/compare.js" in r.content
    assert r.context["metric"] == "tool_execution_ms"
    assert {"agent_response_ms", "tool_execution_ms", "agent_memory_bytes"} <= set(r.context["metrics"])
    assert r.context["tags"]["tool"] == ["web_search"] and r.context["tags"]["model"] == []


def test_an_agents_page_links_to_it_against_the_other_agents_of_its_node(viewer, fleet):
    url = viewer.get("/agents/agent-1/?window=24h").context["compare_url"]
    assert url == (
        "/compare/?metric=agent_response_ms&window=24h&a.node=node-1&a.except_agent=agent-1&b.agent=agent-1"
    )
    assert viewer.get("/").context.get("compare_url") is None


def test_the_error_ratio_is_errors_per_response_in_the_window(viewer, fleet):
    token = ApiToken.objects.get()
    series = [("errors_total", "node-1", "agent-1", "{}")]
    now = time.time()
    IngestedBatch.store(
        token.id, Batch("e", series, np.zeros(5, np.int32), np.full(5, now - 30), np.ones(5)), now=now
    )
    kpis = viewer.get("/data/overview?window=5m").json()["kpis"]
    assert kpis["responses"] == 20 and kpis["error_ratio"] == pytest.approx(5 / 20)
    # per second of the window so far (its last minute is still running), as points/s
    assert kpis["errors_per_s"] / kpis["points_per_s"] == pytest.approx(5 / 105)


def test_the_error_ratio_counts_errors_and_responses_over_the_same_window(viewer, fleet):
    """On a 24 h page the panels' window is aligned to their 30-minute step: errors from just
    before it must not count against responses that are not in it either."""
    now = time.time()
    start = (int(now) // 1800 + 1) * 1800 - 86400  # where the 24 h panels' window starts
    if (int(now) // 60 + 1) * 60 - 86400 > start - 60:
        pytest.skip("a minute-aligned window starts with the panels' in the minute before a half hour")
    series = [("errors_total", "node-1", "agent-1", "{}")]
    batch = Batch("e", series, np.zeros(3, np.int32), np.full(3, start - 30.0), np.ones(3))
    IngestedBatch.store(ApiToken.objects.get().id, batch, now=now)
    kpis = viewer.get("/data/overview?window=24h").json()["kpis"]
    assert kpis["responses"] == 20 and kpis["error_ratio"] == 0


def test_the_overview_data_has_every_panel(viewer, fleet):
    data = viewer.get("/data/overview?window=5m").json()
    assert data["kpis"]["active_agents"] == 2 and data["kpis"]["responses"] == 20
    assert [m["metric"] for m in data["latency"]] == [
        "agent_response_ms",
        "tool_execution_ms",
        "llm_call_ms",
        "memory_op_ms",
    ]
    response = data["latency"][0]
    assert response["stats"]["count"] == 20 and response["target"] == {"stat": "p95", "value": 2000}
    assert sum(b["count"] for b in response["histogram"]["buckets"]) == 20
    assert len(response["series"]["t"]) == 5
    assert [v for v in response["series"]["p95"] if v is not None] == [pytest.approx(900, rel=0.01)]
    assert data["memory"]["top"] == [{"agent": SCRIPT, "mb": 150.0}] and data["memory"]["target_mb"] == 100
    distribution = data["memory"]["distribution"]
    assert (
        distribution["agents"] == 1 and sum(distribution["counts"]) == 1 and len(distribution["edges"]) == 41
    )
    assert data["nodes"] == [{"node": "node-1", "active_agents": 2, "capacity": 1000}]


def test_filters_narrow_the_data(viewer, fleet):
    data = viewer.get("/data/overview?window=1h&tool=calculator").json()
    assert data["latency"][1]["stats"]["count"] == 0  # tool filter: no calculator calls
    assert data["latency"][0]["stats"]["count"] == 20  # other metrics unaffected
    agent = viewer.get("/data/overview?window=1h&agent=agent-1").json()
    assert agent["slowest"]["tools"][0]["name"] == "web_search" and "nodes" not in agent


def test_the_tools_page_lists_tools_models_and_providers(viewer, fleet):
    data = viewer.get("/data/tools?window=1h").json()
    assert [t["name"] for t in data["tools"]] == ["web_search"]
    assert data["models"][0]["name"] == "m-large" and data["models"][0]["p95_change"] is None
    assert data["providers"][0]["name"] == "acme"


def test_a_script_in_an_agent_name_is_escaped_in_the_page(viewer, fleet):
    r = viewer.get("/agents/" + SCRIPT.replace("/", "%2F") + "/")
    assert SCRIPT.encode() not in r.content
    assert b"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in r.content


def test_only_staff_reach_the_settings(viewer, fleet):
    for path in ("/admin/", "/admin/api/apitoken/", "/admin/alerts/alertrule/"):
        r = viewer.get(path, follow=True)
        assert r.status_code == 403 and b"Not allowed" in r.content
    assert b"Settings" not in viewer.get("/").content
    staff = User.objects.create_user("ops", password="x" * 12, is_staff=True, is_superuser=True)
    viewer.force_login(staff)
    assert viewer.get("/admin/api/apitoken/").status_code == 200
    assert b"Settings" in viewer.get("/").content


def test_firing_alerts_are_on_the_overview_and_on_their_agents_page(viewer, fleet):
    from perfdash.alerts.models import AlertRule, AlertState

    rule = AlertRule.objects.create(
        name="Agent memory",
        metric="agent_memory_bytes",
        statistic="max",
        scope="agent",
        threshold=100e6,
        severity="critical",
    )
    AlertState.objects.create(rule=rule, subject=SCRIPT, state="firing", value=150e6)
    AlertState.objects.create(rule=rule, subject="agent-1", state="pending", value=101e6)
    alerts = viewer.get("/data/overview?window=5m").json()["alerts"]
    assert [(a["rule"], a["subject"], a["severity"]) for a in alerts] == [
        ("Agent memory", SCRIPT, "critical")
    ]
    assert viewer.get("/data/overview?window=5m&agent=agent-1").json()["alerts"] == []


def test_the_live_path_with_kept_memory_peaks_gets_the_stored_overview(fleet):
    from perfdash.dashboard import panels, peaks

    view = panels.View(window="5m")
    live = peaks.AgentPeaks()
    live.add(peaks.read())
    stored, kept = panels.build(view), panels.build(view, live)
    assert kept["memory"] == stored["memory"] and kept["memory"]["top"][0]["mb"] == 150
    assert kept["latency"] == stored["latency"] and kept["kpis"] == pytest.approx(stored["kpis"], rel=1e-3)


@pytest.mark.parametrize("query", ["agent=a%00b", "node=%00", "tool=%1b", "model=x%7f"])
def test_a_filter_with_control_characters_is_a_bad_request_not_a_server_error(viewer, query):
    data = viewer.get(f"/data/overview?{query}")
    assert data.status_code == 400 and data.json()["param"] == query.split("=")[0]
    assert viewer.get(f"/?{query}").status_code == 400
    assert viewer.get(f"/tools/?{query}").status_code == 400


def test_a_node_path_with_a_nul_is_a_bad_request(viewer):
    assert viewer.get("/nodes/a%00b/").status_code == 400


@pytest.fixture
def crowd(db):
    """50 agents, each alone on its node with a tool, a model and a provider of its own: agent i
    makes i + 1 calls of each, its node reports i + 1 active agents, and memory ties in pairs.
    Agent "busy" calls 30 tools."""
    token = ApiToken.issue("t", ["ingest"])[0]
    series, counts, values = [], [], []
    for i in range(50):
        node, agent = f"node-{i:02d}", f"agent-{i:02d}"
        series += [
            ("tool_execution_ms", node, agent, f'{{"tool":"tool-{i:02d}"}}'),
            ("llm_call_ms", node, agent, f'{{"model":"model-{i:02d}","provider":"provider-{i:02d}"}}'),
            ("agent_memory_bytes", node, agent, "{}"),
            ("active_agents", node, "collector", "{}"),
        ]
        counts += [i + 1, i + 1, 1, 1]
        values += [np.full(i + 1, 100.0 + i), np.full(i + 1, 1000.0 + i), [(i // 2 + 1) * 1e6], [i + 1.0]]
    for t in range(30):
        series.append(("tool_execution_ms", "node-00", "busy", f'{{"tool":"busy-{t:02d}"}}'))
        counts.append(t + 1)
        values.append(np.full(t + 1, 10.0 * (t + 1)))
    idx = np.repeat(np.arange(len(series), dtype=np.int32), counts)
    now = time.time()
    batch = Batch("c", series, idx, np.full(len(idx), now - 30), np.concatenate(values))
    IngestedBatch.store(token.id, batch, now=now)


def test_the_tools_page_has_the_n_most_called_and_one_row_for_the_others(viewer, crowd, settings):
    settings.BREAKDOWN_TOP_N = 10
    data = viewer.get("/data/tools?window=1h").json()
    # tools: the 40 least called agents' tools (1 to 40 calls) and busy's 30 (1 to 30 calls)
    tools_folded = (70, sum(range(1, 41)) + sum(range(1, 31)))
    expected = {
        "tools": tools_folded,
        "models": (40, sum(range(1, 41))),
        "providers": (40, sum(range(1, 41))),
    }
    for table, (folded, calls) in expected.items():
        rows, prefix = data[table], table[:-1]
        assert sorted(r["name"] for r in rows[:-1]) == [f"{prefix}-{i}" for i in range(40, 50)], table
        assert "others" not in rows[0] and (rows[-1]["others"], rows[-1]["count"]) == (folded, calls)
        assert rows[-1]["p50"] is not None


def test_the_overview_shows_the_n_busiest_nodes_and_counts_every_node(viewer, crowd, settings):
    settings.BREAKDOWN_TOP_N = 10
    data = viewer.get("/data/overview?window=5m").json()
    assert [r["node"] for r in data["nodes"]] == [f"node-{i}" for i in range(40, 50)] + ["others"]
    assert data["nodes"][-1]["others"] == 40 and data["nodes"][-1]["active_agents"] == 40
    assert data["kpis"]["active_agents"] == sum(range(1, 51))


def test_the_memory_panel_has_the_n_highest_agents_and_the_others(viewer, crowd, settings):
    from perfdash.dashboard import panels, peaks

    settings.BREAKDOWN_TOP_N = 10
    memory = viewer.get("/data/overview?window=5m").json()["memory"]
    # agents 2k and 2k + 1 tie at k + 1 MB: the first name of a tie ranks first
    assert [r["agent"] for r in memory["top"]] == [
        f"agent-{i}" for i in (48, 49, 46, 47, 44, 45, 42, 43, 40, 41)
    ]
    assert memory["others"] == {"agents": 40, "max_mb": 20.0}
    assert memory["distribution"]["agents"] == 50
    live = peaks.AgentPeaks()  # as a web process keeps them, ranked the same way
    live.add(peaks.read())
    assert panels.memory(panels.View(window="5m"), live) == memory


def test_an_agent_s_slowest_tools_are_its_n_most_called_and_the_others(viewer, crowd, settings):
    settings.BREAKDOWN_TOP_N = 10
    slowest = viewer.get("/data/overview?window=5m&agent=busy").json()["slowest"]["tools"]
    assert [r["name"] for r in slowest] == [f"busy-{t}" for t in range(29, 19, -1)] + ["others"]
    assert slowest[-1]["others"] == 20 and slowest[-1]["count"] == sum(range(1, 21))


def test_the_overview_lists_the_agents_far_above_their_nodes_peers(viewer, peers):  # noqa: F811
    from perfdash.dashboard import panels

    panels._outliers.clear()
    rows = viewer.get("/data/overview").json()["outliers"]
    # Farthest first: whichever stands out more from its peers.
    assert sorted((r["agent"], r["metric"], r["stat"]) for r in rows) == [
        ("agent-5", "agent_response_ms", "p50"),
        ("agent-8", "agent_memory_bytes", "max"),
    ]
    assert rows[0]["mads"] >= rows[1]["mads"]
    slow = next(r for r in rows if r["agent"] == "agent-5")
    assert slow["shown"]["value"].endswith(" s") and slow["mads"] > 5 and slow["node"] == "node-1"
    assert "outliers" not in viewer.get("/data/overview?agent=agent-5").json()


def test_the_overview_lists_an_agent_whose_memory_grows_far_faster_than_its_peers(viewer, leaking):  # noqa: F811
    from perfdash.dashboard import panels

    panels._outliers.clear()
    rows = viewer.get("/data/overview").json()["outliers"]
    assert [(r["agent"], r["stat"], r["window"]) for r in rows] == [("agent-3", "growth", 300)]
    assert rows[0]["shown"]["value"].endswith(" %/min") and rows[0]["mads"] > 5


def test_the_overview_has_an_llm_row_of_tokens_cache_hit_rate_and_error_types(viewer):
    token = ApiToken.issue("llm", ["ingest"])[0]
    now = time.time()
    series = [
        ("tokens_total", "node-1", "agent-1", '{"model":"m-large"}'),
        ("cache_hits_total", "node-1", "agent-1", "{}"),
        ("cache_misses_total", "node-1", "agent-1", "{}"),
        *(
            ("errors_total", "node-1", "agent-1", f'{{"error":"{e}"}}')
            for e in ("Timeout", "RateLimit", "Refused", "Other")
        ),
    ]
    idx = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3, 4, 4, 5, 6], np.int32)
    values = np.array([600.0, 600.0, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1])  # 15 hits, 5 misses
    assert IngestedBatch.store(
        token.id, Batch("llm", series, idx, np.full(len(idx), now - 30), values), now=now
    )
    body = viewer.get("/data/overview?window=5m").json()
    llm = body["llm"]
    elapsed = 1200 / llm["tokens_per_s"]  # the seconds of the window that have passed
    assert 240 < elapsed <= 360
    assert llm["cache_hit_rate"] == pytest.approx(0.75) and llm["cache_lookups"] == 20
    assert [e["error"] for e in llm["errors"]] == ["Timeout", "RateLimit", "Other"]
    assert llm["errors"][0]["per_s"] == pytest.approx(3 / elapsed) and llm["other_error_types"] == 1


def test_the_overview_gives_no_cache_hit_rate_from_too_few_lookups(viewer):
    token = ApiToken.issue("llm", ["ingest"])[0]
    now = time.time()
    series = [
        ("cache_hits_total", "node-1", "agent-1", "{}"),
        ("cache_misses_total", "node-1", "agent-1", "{}"),
    ]
    idx = np.array([0, 0, 0, 1], np.int32)  # 3 hits and 1 miss: 75 %, from 4 lookups
    assert IngestedBatch.store(token.id, Batch("llm", series, idx, np.full(4, now - 30), np.ones(4)), now=now)
    llm = viewer.get("/data/overview?window=5m").json()["llm"]
    assert llm["cache_hit_rate"] is None and llm["cache_lookups"] == 4


def test_the_time_to_first_token_is_shown_with_the_llm_panels_once_sent(viewer, fleet):
    metrics = [p["metric"] for p in viewer.get("/data/overview").json()["latency"]]
    assert "llm_time_to_first_token_ms" not in metrics
    token = ApiToken.issue("ttft", ["ingest"])[0]
    series = [("llm_time_to_first_token_ms", "node-1", "agent-1", '{"model":"m-large"}')]
    now = time.time()
    batch = Batch("ttft", series, np.zeros(5, np.int32), np.full(5, now - 30), np.full(5, 350.0))
    assert IngestedBatch.store(token.id, batch, now=now)
    latency = viewer.get("/data/overview?model=m-large").json()["latency"]
    assert [p["metric"] for p in latency][2:4] == ["llm_call_ms", "llm_time_to_first_token_ms"]
    assert latency[3]["stats"]["count"] == 5
