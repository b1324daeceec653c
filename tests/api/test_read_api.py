"""Read API v1: stats, histogram and series, with a read token or a logged-in session."""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.contrib.auth.models import User

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch


@pytest.fixture
def world(db):
    token = ApiToken.issue("w", ["ingest"])[0]
    now = time.time()
    series = [
        ("agent_response_ms", "node-1", "agent-1", "{}"),
        ("agent_response_ms", "node-2", "agent-2", "{}"),
        ("llm_call_ms", "node-1", "agent-1", '{"model":"m-large","provider":"acme"}'),
    ]
    idx = np.array([0] * 100 + [1] * 50 + [2] * 30, np.int32)
    values = np.concatenate([np.full(100, 100.0), np.full(50, 1000.0), np.full(30, 2500.0)])
    ts = np.full(len(idx), now - 30)
    IngestedBatch.store(token.id, Batch("w1", series, idx, ts, values), now=now)


def get(client, path: str, token: str | None = None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(f"/api/v1/{path}", **extra)


def test_stats_over_the_fleet(client, read_token, world):
    r = get(client, "stats?metric=agent_response_ms&window=5m", read_token)
    assert r.status_code == 200
    body = r.json()
    assert body["metric"] == "agent_response_ms" and body["window"] == "5m"
    assert body["count"] == 150 and body["min"] == 100.0 and body["max"] == 1000.0
    assert body["avg"] == pytest.approx(400.0)
    assert body["p50"] == pytest.approx(100.0, rel=0.01)
    assert body["p99"] == pytest.approx(1000.0, rel=0.01)
    assert set(body) >= {"count", "min", "max", "avg", "p50", "p90", "p95", "p99"}


@pytest.mark.parametrize("filters, n", [("node=node-2", 50), ("agent=agent-1", 100), ("node=node-9", 0)])
def test_stats_filtered_by_node_or_agent(client, read_token, world, filters, n):
    body = get(client, f"stats?metric=agent_response_ms&window=1h&{filters}", read_token).json()
    assert body["count"] == n


def test_stats_filtered_by_tag(client, read_token, world):
    body = get(client, "stats?metric=llm_call_ms&window=1h&tag.model=m-large", read_token).json()
    assert body["count"] == 30 and body["p95"] == pytest.approx(2500, rel=0.01)
    body = get(
        client, "stats?metric=llm_call_ms&window=1h&agent=agent-1&tag.provider=acme", read_token
    ).json()
    assert body["count"] == 30


def test_histogram_counts_add_up(client, read_token, world):
    body = get(client, "histogram?metric=agent_response_ms&window=1h&buckets=10", read_token).json()
    assert len(body["buckets"]) == 10
    assert sum(b["count"] for b in body["buckets"]) == body["count"] == 150
    assert body["buckets"][0]["lower"] == 100.0 and body["buckets"][-1]["upper"] == 1000.0
    assert body["buckets"][0]["count"] == 100


def test_series_gives_one_value_per_step(client, read_token, world):
    body = get(client, "series?metric=agent_response_ms&window=10m&step=1m&stat=count", read_token).json()
    assert len(body["points"]) == 10
    assert sum(v for _, v in body["points"]) == 150
    assert body["points"][0][0].endswith("Z")
    body = get(client, "series?metric=agent_response_ms&window=1h&step=5m&stat=p99", read_token).json()
    assert [v for _, v in body["points"] if v is not None] == [pytest.approx(1000, rel=0.01)]


@pytest.mark.parametrize(
    "path, param",
    [
        ("stats?window=1h", "metric"),
        ("stats?metric=agent_response_ms&window=1y", "window"),
        ("stats?metric=agent_response_ms&window=0m", "window"),
        ("stats?metric=agent_response_ms&window=400d", "window"),
        ("stats?metric=agent_response_ms&colour=red", "colour"),
        ("stats?metric=agent_response_ms&tag.user=bob", "tag.user"),
        ("stats?metric=agent_response_ms&tag.tool=a&tag.model=b", "tag.model"),
        ("histogram?metric=agent_response_ms&buckets=many", "buckets"),
        ("series?metric=agent_response_ms&step=7s", "step"),
        ("series?metric=agent_response_ms&window=1h&step=7m", "step"),
        ("series?metric=agent_response_ms&window=30d&step=1m", "step"),
        ("series?metric=agent_response_ms&stat=p42", "stat"),
    ],
)
def test_a_bad_parameter_gets_400_naming_it(client, read_token, world, path, param):
    r = get(client, path, read_token)
    assert r.status_code == 400, r.content
    assert r.json()["param"] == param


def test_an_unknown_metric_gets_404(client, read_token, world):
    r = get(client, "stats?metric=no_such_metric", read_token)
    assert r.status_code == 404
    assert "no_such_metric" in r.json()["error"]


def test_a_well_known_metric_without_data_is_empty_not_404(client, read_token, world):
    body = get(client, "stats?metric=memory_op_ms", read_token).json()
    assert body["count"] == 0 and body["p95"] is None


def test_reading_needs_a_read_token_or_a_session(client, ingest_token, world):
    assert get(client, "stats?metric=agent_response_ms").status_code == 401
    assert get(client, "stats?metric=agent_response_ms", ingest_token).status_code == 401
    client.force_login(User.objects.create_user("viewer", password="x" * 12))
    assert get(client, "stats?metric=agent_response_ms").status_code == 200


def test_reading_is_get_only(client, read_token, world):
    r = client.post("/api/v1/stats?metric=agent_response_ms", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert r.status_code == 405


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("node=%00", "node"),
        ("agent=a%00b", "agent"),
        ("tag.tool=%00", "tag.tool"),
        ("metric=a%00b", "metric"),
    ],
)
def test_a_filter_with_control_characters_is_a_400_naming_it(client, read_token, world, query, param):
    params = "window=1h&" + (query if param == "metric" else "metric=agent_response_ms&" + query)
    response = get(client, f"stats?{params}", read_token)
    assert response.status_code == 400 and response.json()["param"] == param


def test_a_post_with_a_session_but_no_csrf_token_is_a_json_405(db):
    from django.contrib.auth.models import User
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(User.objects.create_user("poster", password="x" * 12))
    response = browser.post("/api/v1/stats?metric=agent_response_ms")
    assert response.status_code == 405 and response.json()["error"].startswith("method POST")
