"""Cardinality limits: new series per token per minute, series per metric, metric names, and
the daily values of a dimension tag beyond which rollups fold into `_other`."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import orjson
import pytest
import redis
from django.contrib.auth.models import User
from django.db import connection

from perfdash.api.models import ApiToken
from perfdash.ingest import cardinality
from perfdash.ingest.models import IngestedBatch
from perfdash.ingest.validate import Limits, parse_batch
from perfdash.lib.redis import client, key
from perfdash.metrics import query, store
from perfdash.metrics.batch import Batch
from perfdash.metrics.cardinality import DimensionValue, MetricSeries
from tests.conftest import start_server, wait_until

NOW = time.time()
URL = "/api/v1/ingest"
LIMITS = Limits(10_000, 16, 128, 1 << 24, 600, 90 * 86400)


@pytest.fixture(autouse=True)
def nothing_known() -> None:
    cardinality.forget()


@pytest.fixture
def collector(db) -> tuple[ApiToken, str]:
    return ApiToken.issue("collector", ["ingest"])


@pytest.fixture
def token(transactional_db, clean_tables) -> str:
    return ApiToken.issue("collector", ["ingest"])[1]


def points(agents: list[str], metric: str = "agent_response_ms", tags: dict | None = None) -> list[dict]:
    return [
        {
            "ts": NOW - 5,
            "node": "node-1",
            "agent": a,
            "metric": metric,
            "value": 1.0,
            **({"tags": tags} if tags else {}),
        }
        for a in agents
    ]


def names(n: int, prefix: str = "agent") -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"{prefix}-{run}-{i}" for i in range(n)]


def batch_of(pts: list[dict]) -> Batch:
    return parse_batch(orjson.dumps({"points": pts}), LIMITS, NOW)


def post(client_, token: str, pts: list[dict]):
    return client_.post(
        URL,
        data=orjson.dumps({"points": pts}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def spend_budget(token_id: int, used: int, now: float = NOW) -> None:
    """The token's count of new series this minute and the next (a request may cross into it)."""
    minute = int(now // 60)
    for m in (minute, minute + 1):
        client().set(key("new_series", token_id, m), used, ex=120)


def used_budget(token_id: int, now: float = NOW) -> int:
    return int(client().get(key("new_series", token_id, int(now // 60))) or 0)


def create(series_agents: list[str], metric: str = "agent_response_ms", tags: str = "{}") -> None:
    store.resolve([(metric, "node-1", a, tags) for a in series_agents])


# --- New series per token per minute --------------------------------------------------------


def test_a_batch_of_new_series_over_the_tokens_minute_is_refused_whole_with_429_and_retry_after(
    client, collector, settings
):
    token, raw = collector
    settings.INGEST_NEW_SERIES_PER_MINUTE = 100
    spend_budget(token.id, 98, time.time())  # the view's clock: NOW was taken at collection
    r = post(client, raw, points(names(3)))
    assert r.status_code == 429, r.content
    assert 1 <= int(r["Retry-After"]) <= 60
    body = r.json()
    assert body["limit"] == "new_series_per_minute"
    assert (body["count"], body["new"], body["max"]) == (98, 3, 100)
    assert "new series" in body["error"]
    assert used_budget(token.id, time.time()) == 98


def test_a_refused_batch_does_not_spend_the_budget(collector, settings):
    token, _ = collector
    settings.INGEST_NEW_SERIES_PER_MINUTE = 100
    spend_budget(token.id, 97)
    refused = cardinality.check(token.id, batch_of(points(names(4))), NOW)
    assert refused is not None and refused.status == 429
    assert used_budget(token.id) == 97
    assert cardinality.check(token.id, batch_of(points(names(3))), NOW) is None
    assert used_budget(token.id) == 100


def test_new_series_are_counted_once_while_their_batches_wait_to_be_stored(collector, settings):
    # A collector's backfill sends batch after batch of the same series before a worker has
    # stored the first: each must not count them again.
    token, _ = collector
    settings.INGEST_NEW_SERIES_PER_MINUTE = 10
    fleet = names(8)
    for _ in range(5):
        assert cardinality.check(token.id, batch_of(points(fleet)), NOW) is None
    assert used_budget(token.id) == 8


def test_the_budget_starts_again_the_next_minute(collector, settings):
    token, _ = collector
    settings.INGEST_NEW_SERIES_PER_MINUTE = 10
    minute_start = (NOW // 60) * 60
    assert cardinality.check(token.id, batch_of(points(names(10))), minute_start + 1) is None
    refused = cardinality.check(token.id, batch_of(points(names(1))), minute_start + 50)
    assert refused.status == 429 and refused.retry_after == 10
    assert cardinality.check(token.id, batch_of(points(names(1))), minute_start + 61) is None


def test_a_batch_of_existing_series_passes_while_the_token_is_over_its_budget(client, collector, settings):
    token, raw = collector
    settings.INGEST_NEW_SERIES_PER_MINUTE = 100
    agents = names(5)
    create(agents)
    spend_budget(token.id, 100, time.time())
    r = post(client, raw, points(agents))
    assert r.status_code == 202, r.content
    assert used_budget(token.id, time.time()) == 100


def test_existing_series_need_no_query_once_known(collector, django_assert_num_queries):
    token, _ = collector
    agents = names(5)
    create(agents)
    batch = batch_of(points(agents))
    assert cardinality.check(token.id, batch, NOW) is None  # looks them up once
    with django_assert_num_queries(0):
        assert cardinality.check(token.id, batch, NOW) is None


def test_a_batch_with_more_new_series_than_a_minute_allows_is_a_422(client, collector, settings):
    _, raw = collector
    settings.INGEST_NEW_SERIES_PER_MINUTE = 10
    r = post(client, raw, points(names(11)))
    assert r.status_code == 422
    assert r.json()["limit"] == "new_series_per_minute"
    assert (r.json()["new"], r.json()["max"]) == (11, 10)


def test_a_limit_set_to_zero_is_off(collector, settings):
    token, _ = collector
    settings.INGEST_NEW_SERIES_PER_MINUTE = 0
    settings.INGEST_MAX_METRICS = 0
    settings.INGEST_MAX_SERIES_PER_METRIC = 0
    spend_budget(token.id, 10**9)
    assert cardinality.check(token.id, batch_of(points(names(50))), NOW) is None


def test_with_redis_unreachable_new_series_get_a_503_and_known_series_pass(collector, monkeypatch):
    token, _ = collector
    agents = names(3)
    create(agents)
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    monkeypatch.setattr(cardinality, "client", lambda: unreachable)
    refused = cardinality.check(token.id, batch_of(points(names(1))), NOW)
    assert refused.status == 503 and refused.retry_after > 0
    assert cardinality.check(token.id, batch_of(points(agents)), NOW) is None


# --- Series per metric and metric names ------------------------------------------------------


def test_series_are_counted_per_metric_once_each(db):
    create(names(3), "agent_response_ms")
    create(names(2), "llm_call_ms")
    agents = names(4)
    create(agents, "llm_call_ms")
    store.forget()  # a restarted worker resolves existing series again
    create(agents, "llm_call_ms")
    assert dict(MetricSeries.objects.values_list("metric", "series")) == {
        "agent_response_ms": 3,
        "llm_call_ms": 6,
    }


def test_a_metric_at_its_maximum_refuses_new_series_with_a_422_naming_it(client, collector, settings):
    _, raw = collector
    settings.INGEST_MAX_SERIES_PER_METRIC = 3
    agents = names(3)
    create(agents, "tool_execution_ms")
    r = post(client, raw, points([*agents, "newcomer"], "tool_execution_ms"))
    assert r.status_code == 422, r.content
    assert r.json() == {
        "error": "metric 'tool_execution_ms' has 3 series of at most 3; the batch adds 1",
        "limit": "series_per_metric",
        "metric": "tool_execution_ms",
        "count": 3,
        "new": 1,
        "max": 3,
    }
    assert post(client, raw, points(agents, "tool_execution_ms")).status_code == 202
    assert post(client, raw, points(["newcomer"], "agent_response_ms")).status_code == 202


def test_new_metric_names_beyond_the_maximum_are_refused_with_a_422(client, collector, settings):
    _, raw = collector
    settings.INGEST_MAX_METRICS = 3
    for metric in ("m_a", "m_b"):
        create(["agent-1"], metric)
    flood = [p for i in range(2) for p in points(["agent-1"], f"flood_{i}")]
    r = post(client, raw, flood)
    assert r.status_code == 422, r.content
    body = r.json()
    assert (body["limit"], body["metric"], body["count"], body["new"], body["max"]) == (
        "metrics",
        "flood_0",
        2,
        2,
        3,
    )
    assert post(client, raw, points(["agent-1"], "flood_0")).status_code == 202


# --- Dimension tag values: the fold into _other -----------------------------------------------


def tool_series(tools: list[str], agent: str = "agent-1") -> list[tuple[str, str, str, str]]:
    return [("tool_execution_ms", "node-1", agent, orjson.dumps({"tool": t}).decode()) for t in tools]


def rollup_values(tag: str = "tool") -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT DISTINCT tag_value FROM metrics_rollupkey WHERE tag_key = %s", [tag])
        return {r[0] for r in cur.fetchall()}


def test_the_201st_tool_of_the_day_rolls_up_under_other_and_its_raw_series_keeps_its_name(db):
    tools = [f"tool-{i:03d}" for i in range(201)]
    token = ApiToken.issue("b", ["ingest"])[0]
    series = tool_series(tools)
    idx = np.arange(201, dtype=np.int32)
    IngestedBatch.store(token.id, Batch("b", series, idx, np.full(201, NOW - 10), np.ones(201)), now=NOW)

    assert rollup_values() == {*tools[:200], "_other"}
    with connection.cursor() as cur:
        cur.execute("SELECT tags->>'tool' FROM metrics_series WHERE tags->>'tool' = 'tool-200'")
        assert cur.fetchall() == [("tool-200",)]
    by_tool = query.breakdown("tool_execution_ms", 300, "tool", now=NOW)
    assert by_tool["_other"]["count"] == 1
    assert "tool-200" not in by_tool
    assert DimensionValue.objects.get(tag_key="tool", tag_value="tool-200").own is False


def test_a_folded_value_stays_folded_for_its_later_series_and_after_a_restart(db, settings):
    settings.DIMENSION_MAX_VALUES = 2
    store.resolve(tool_series(["a", "b", "c"]))
    first = store.resolve(tool_series(["c"], agent="agent-2"))[1]
    store.forget()
    settings.DIMENSION_MAX_VALUES = 200
    again = store.resolve(tool_series(["c"], agent="agent-2"))[1]
    assert first.tolist() == again.tolist()
    assert rollup_values() == {"a", "b", "_other"}


def test_values_first_seen_on_earlier_days_leave_today_its_own_values(db, settings):
    settings.DIMENSION_MAX_VALUES = 2
    store.resolve(tool_series(["a", "b"]))
    DimensionValue.objects.update(day=datetime.now(UTC).date() - timedelta(days=1))
    store.resolve(tool_series(["c", "d", "e"]))
    assert rollup_values() == {"a", "b", "c", "d", "_other"}


def test_values_a_store_had_before_the_limit_keep_their_rollups(db, settings):
    store.resolve(tool_series(["a", "b"]))
    settings.DIMENSION_MAX_VALUES = 1
    store.forget()
    store.resolve(tool_series(["a", "b"], agent="agent-2"))
    assert rollup_values() == {"a", "b"}


# --- The admin --------------------------------------------------------------------------------


def test_the_admin_shows_metrics_by_series_tags_by_values_and_tokens_by_new_series_today(
    client, collector, settings
):
    token, _ = collector
    settings.DIMENSION_MAX_VALUES = 1
    create(names(7), "tool_execution_ms", '{"tool":"web_search"}')
    create(names(2), "tool_execution_ms", '{"tool":"calculator"}')
    assert cardinality.check(token.id, batch_of(points(names(12), "llm_call_ms")), time.time()) is None
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    page = client.get("/admin/metrics/metricseries/").content.decode()
    metrics = page[page.index("Metrics by series") :]
    assert "tool_execution_ms" in metrics and ">9<" in metrics
    tags = page[page.index("Tags by values") : page.index("Tokens by new series")]
    assert "<td>tool</td><td>1</td><td>1</td><td>2</td>" in tags
    tokens = page[page.index("Tokens by new series") : page.index("Metrics by series")]
    assert "collector" in tokens and "<td>12</td>" in tokens


# --- End to end: a real server and worker ------------------------------------------------------


def http_post(url: str, token: str, pts: list[dict]) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/ingest",
        content=orjson.dumps({"points": pts}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )


def count(sql: str, *params: str) -> int:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


@pytest.mark.slow
def test_a_flood_of_new_names_is_refused_while_existing_series_keep_flowing(tmp_path, celery_worker, token):
    server, url = start_server(tmp_path, INGEST_NEW_SERIES_PER_MINUTE="150", INGEST_MAX_METRICS="20")
    token_id = ApiToken.objects.get().id
    try:
        fleet = names(100)
        assert http_post(url, token, points(fleet)).status_code == 202
        wait_until(lambda: count("SELECT count(*) FROM metrics_point") == 100, what="the fleet's first batch")

        minute = int(time.time() // 60)
        for m in (minute, minute + 1):  # this minute's budget is spent, whichever minute it is
            client().set(key("new_series", token_id, m), 150, ex=120)
        flood = names(120, "flood")
        refused = http_post(url, token, points(flood))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        metric_flood = [p for i in range(30) for p in points(fleet[:1], f"flood_{i}")]
        refused = http_post(url, token, metric_flood)
        assert refused.status_code == 422 and refused.json()["limit"] == "metrics"
        assert http_post(url, token, points(fleet)).status_code == 202

        wait_until(
            lambda: count("SELECT count(*) FROM metrics_point") == 200, what="the fleet's second batch"
        )
        flooded = "SELECT count(*) FROM metrics_series WHERE agent LIKE %s OR metric LIKE %s"
        assert count(flooded, "flood-%", "flood\\_%") == 0
        assert count("SELECT count(*) FROM metrics_series") == 100
        assert MetricSeries.objects.get(metric="agent_response_ms").series == 100
    finally:
        server.kill()
