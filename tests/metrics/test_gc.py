"""Series and rollup keys that stop reporting are removed after the rollup retention, with their
rows; workers and readers that held them carry on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import compact, gc, keys, query, store
from perfdash.metrics.batch import Batch
from perfdash.metrics.models import Series
from perfdash.metrics.scope import Scope

NOW = time.time()
DAY = 86400
OLD = ("agent_response_ms", "node-old", "agent-old", "{}")
NEW = ("agent_response_ms", "node-new", "agent-new", "{}")


def today() -> datetime:
    return datetime.fromtimestamp(NOW, UTC)


def stored(series: tuple, name: str, ts: float, now: float = NOW, n: int = 5) -> None:
    batch = Batch(name, [series], np.zeros(n, np.int32), np.full(n, ts), np.full(n, 100.0))
    IngestedBatch.store(ApiToken.objects.get().id, batch, now=now)


def last_seen_days_ago(agent: str, node: str, days: int) -> None:
    """As if the agent, and its node, last reported `days` ago."""
    day = (today() - timedelta(days=days)).date()
    with connection.cursor() as cur:
        cur.execute("UPDATE metrics_series SET last_seen = %s WHERE agent = %s", [day, agent])
        cur.execute("UPDATE metrics_rollupkey SET last_seen = %s WHERE node = %s", [day, node])


def rows_of(table: str, where: str, params: list) -> int:
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*) FROM {table} t JOIN metrics_rollupkey k ON k.id = t.key_id WHERE {where}",
            params,
        )
        return cur.fetchone()[0]


def key_ids(node: str) -> list[int]:
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM metrics_rollupkey WHERE node = %s", [node])
        return [r[0] for r in cur.fetchall()]


@pytest.fixture
def token(db):
    return ApiToken.issue("gc", ["ingest"])[0]


def test_what_has_not_reported_for_the_retention_goes_with_its_rows(token, settings):
    settings.ROLLUP_RETENTION_DAYS = 90
    stored(OLD, "a", NOW - 89 * DAY)  # its last points, near the end of the hour rollups' retention
    compact.compact()  # into an hour partition that is not dropped yet
    stored(OLD, "b", NOW - 89 * DAY)  # and deltas not folded yet
    stored(NEW, "c", NOW - 60)
    last_seen_days_ago("agent-old", "node-old", 91)
    old_keys = key_ids("node-old")
    fleet_hours = rows_of("metrics_rollup_hour", "k.node = ''", [])

    removed = gc.collect(today().date())

    assert (removed.keys, removed.series) == (2, 1)  # node-old's and agent-old's keys, its series
    with connection.cursor() as cur:
        cur.execute("SELECT agent FROM metrics_series")
        assert cur.fetchall() == [("agent-new",)]
        for table in ("metrics_rollup_delta", "metrics_rollup_hour"):
            cur.execute(f"SELECT count(*) FROM {table} WHERE key_id = ANY(%s)", [old_keys])
            assert cur.fetchone()[0] == 0, table
        cur.execute("SELECT series FROM metrics_metricseries WHERE metric = 'agent_response_ms'")
        assert cur.fetchone()[0] == 1
    assert rows_of("metrics_rollup_hour", "k.node = ''", []) == fleet_hours  # the fleet still reports


def test_what_reported_within_the_retention_stays(token, settings):
    settings.ROLLUP_RETENTION_DAYS = 90
    stored(OLD, "a", NOW - 60)
    last_seen_days_ago("agent-old", "node-old", 90)

    assert gc.collect(today().date()) == gc.Collected(0, 0)


def test_a_batch_marks_its_series_and_keys_seen_once_a_day(token):
    stored(OLD, "a", NOW - 60)
    last_seen_days_ago("agent-old", "node-old", 3)
    tomorrow = NOW + DAY

    with CaptureQueriesContext(connection) as first:
        stored(OLD, "b", tomorrow - 60, now=tomorrow)
    with CaptureQueriesContext(connection) as second:
        stored(OLD, "c", tomorrow - 30, now=tomorrow)

    with connection.cursor() as cur:
        cur.execute("SELECT last_seen FROM metrics_series UNION SELECT last_seen FROM metrics_rollupkey")
        assert cur.fetchall() == [(datetime.fromtimestamp(tomorrow, UTC).date(),)]
    assert sum("last_seen" in q["sql"] for q in first) == 2  # keys, then series
    assert not any("last_seen" in q["sql"] for q in second)


def test_a_worker_that_cached_a_removed_series_makes_it_again(token, settings):
    settings.ROLLUP_RETENTION_DAYS = 90
    stored(OLD, "a", NOW - 60)  # this process caches its ids
    last_seen_days_ago("agent-old", "node-old", 91)
    gc.collect(today().date())
    later = NOW + DAY  # its first batch of another day marks it seen, and finds it gone

    stored(OLD, "b", later - 60, now=later)

    assert query.stats("agent_response_ms", 300, Scope(agent="agent-old"), now=later)["count"] == 5
    assert query.breakdown("agent_response_ms", 300, "node", now=later)["node-old"]["count"] == 5


def test_readers_drop_removed_keys_from_their_index(token, settings):
    settings.ROLLUP_RETENTION_DAYS = 90
    stored(OLD, "a", NOW - 60)
    stored(NEW, "b", NOW - 60)
    assert {name for _, name in keys.members("agent_response_ms", "agent", Scope())} == {
        "agent-old",
        "agent-new",
    }
    last_seen_days_ago("agent-old", "node-old", 91)

    gc.collect(today().date())

    assert {name for _, name in keys.members("agent_response_ms", "agent", Scope())} == {"agent-new"}
    assert keys.ids("agent_response_ms", Scope(node="node-old")) == []


def test_a_worker_keeps_a_bounded_number_of_series(token, settings):
    settings.STORE_SERIES_CACHE = settings.INGEST_MAX_POINTS = 4
    series = [("agent_response_ms", "node-1", f"agent-{i}", "{}") for i in range(10)]
    batches = [
        Batch(f"b{i}", [s], np.zeros(1, np.int32), np.full(1, NOW - 60), np.ones(1))
        for i, s in enumerate(series)
    ]
    for batch in batches:
        IngestedBatch.store(token.id, batch, now=NOW)
    assert len(store._series_cache) == 4

    first = store.resolve(series[:1])  # forgotten: looked up again, the same ids
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM metrics_series WHERE agent = 'agent-0'")
        assert first[0].tolist() == [cur.fetchone()[0]]


def test_a_worker_drops_its_cached_series_when_the_generation_moves_on(db):
    series = [("gen_metric_ms", "node-1", "agent-gen", "{}")]
    batch = Batch("g", series, np.zeros(1, np.int32), np.array([time.time()]), np.array([1.0]))
    first, _ = store.prepare(batch, time.time())
    with connection.cursor() as cur:  # removed behind the process's back, as a flush does
        cur.execute("DELETE FROM metrics_series WHERE id = %s", [int(first[0])])
        cur.execute("INSERT INTO metrics_keyversion (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
        cur.execute("UPDATE metrics_keyversion SET generation = generation + 1 WHERE id = 1")
    again, _ = store.prepare(batch, time.time())
    assert again[0] != first[0] and Series.objects.filter(id=int(again[0]), agent="agent-gen").exists()
