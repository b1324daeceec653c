"""Folding deltas into minute and hour rollups changes no answer and loses no point."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from django.db import connection

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import compact, query
from perfdash.metrics.batch import Batch
from perfdash.metrics.tasks import compact_rollups
from tests.conftest import wait_until

NOW = time.time()
SERIES = [("memory_op_ms", f"node-{i % 2}", f"agent-{i}", '{"op":"read"}') for i in range(10)]


def batch(name: str, n: int, seed: int, spread_s: float = 7200) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(
        name,
        SERIES,
        rng.integers(0, 10, n).astype(np.int32),
        NOW - rng.uniform(0, spread_s, n),
        rng.lognormal(3, 1, n),
    )


def total(table: str) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT coalesce(sum(count), 0), count(*) FROM {table}")
        return cur.fetchone()


@pytest.fixture
def token(db):
    return ApiToken.issue("c", ["ingest"])[0]


def test_compaction_moves_every_point_and_merges_rows(token):
    for i in range(5):
        IngestedBatch.store(token.id, batch(f"b{i}", 2000, i), now=NOW)
    before = query.stats("memory_op_ms", 86400, now=NOW)
    delta_points, delta_rows = total("metrics_rollup_delta")
    assert delta_points == 10_000 * 6  # fleet, node, agent, each also by op

    assert compact.compact() == delta_rows
    assert total("metrics_rollup_delta") == (0, 0)
    minute_points, minute_rows = total("metrics_rollup_minute")
    hour_points, hour_rows = total("metrics_rollup_hour")
    assert minute_points == hour_points == delta_points
    assert minute_rows < delta_rows and hour_rows < minute_rows
    assert query.stats("memory_op_ms", 86400, now=NOW) == pytest.approx(before, rel=1e-12)


def test_late_deltas_merge_into_existing_rollup_rows(token):
    IngestedBatch.store(token.id, batch("first", 3000, 1), now=NOW)
    compact.compact()
    IngestedBatch.store(token.id, batch("late", 3000, 2), now=NOW)
    compact.compact()
    assert total("metrics_rollup_minute")[0] == 6000 * 6
    with connection.cursor() as cur:  # still one row per key and period
        cur.execute(
            "SELECT count(*) FROM (SELECT key_id, minute FROM metrics_rollup_minute "
            "GROUP BY 1, 2 HAVING count(*) > 1) dup"
        )
        assert cur.fetchone()[0] == 0
    assert query.stats("memory_op_ms", 86400, now=NOW)["count"] == 6000


def test_points_older_than_minute_retention_fold_into_hours_only(token, settings):
    settings.MINUTE_ROLLUP_RETENTION_DAYS = 3
    old = Batch("old", SERIES, np.zeros(100, np.int32), np.full(100, NOW - 5 * 86400), np.full(100, 9.0))
    IngestedBatch.store(token.id, old, now=NOW)
    compact.compact()
    assert total("metrics_rollup_minute")[0] == 0
    assert total("metrics_rollup_hour")[0] == 600
    assert query.stats("memory_op_ms", 7 * 86400, now=NOW)["count"] == 100


@pytest.mark.django_db(transaction=True)
def test_two_compactors_at_once_fold_each_delta_exactly_once(clean_tables):
    token = ApiToken.issue("c", ["ingest"])[0]
    for i in range(8):
        IngestedBatch.store(token.id, batch(f"b{i}", 3000, i), now=NOW)
    expected = total("metrics_rollup_delta")[0]
    results = []

    def run():
        results.append(compact.compact(chunk=500))
        connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    compact.compact()
    assert total("metrics_rollup_delta") == (0, 0)
    assert total("metrics_rollup_minute")[0] == total("metrics_rollup_hour")[0] == expected


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_compaction_task_runs_on_a_real_worker(clean_tables, celery_worker):
    token = ApiToken.issue("c", ["ingest"])[0]
    IngestedBatch.store(token.id, batch("b", 1000, 3), now=time.time())
    vacuums = delta_vacuums()
    compact_rollups.delay()
    wait_until(lambda: total("metrics_rollup_delta") == (0, 0), what="the worker to compact")
    assert total("metrics_rollup_hour")[0] == 6000
    # ... and vacuums the deltas it deleted, so that live reads do not walk dead rows until autovacuum.
    wait_until(lambda: delta_vacuums() > vacuums, what="the worker to vacuum the deltas")


def delta_vacuums() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'metrics_rollup_delta'")
        return cur.fetchone()[0]
