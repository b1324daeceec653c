"""perfdash's own health: measurements pushed by processes, gauges read from the tables, all
stored under the node `perfdash` and watched by the seeded rule "ingest is more than 60 s
behind"."""

from __future__ import annotations

import importlib
import time
from datetime import timedelta

import numpy as np
import pytest
import redis
from django.apps import apps
from django.db.models import F

from perfdash.alerts import engine
from perfdash.alerts.models import AlertRule, AlertState
from perfdash.api.models import ApiToken
from perfdash.dashboard import boards
from perfdash.health import gauges, measure
from perfdash.health.record import record
from perfdash.ingest.models import PendingBatch
from perfdash.ingest.tasks import requeue_pending, store_batch
from perfdash.lib.redis import client
from perfdash.metrics import compact, query
from perfdash.metrics.batch import Batch
from perfdash.metrics.scope import Scope
from tests.conftest import start_server, start_worker, wait_until
from tests.ingest.test_pipeline import make_points, post

HEALTH = Scope(node="perfdash")
SEEDED = importlib.import_module("perfdash.alerts.migrations.0015_default_health_rule")


def seeded_rule() -> AlertRule:
    # The test tables are emptied between tests: the rule comes from its migration again.
    SEEDED.seed(apps, None)
    return AlertRule.objects.get(name=SEEDED.NAME)


@pytest.fixture
def nothing_measured() -> None:
    measure.drain()


def stat(metric: str, statistic: str, now: float, scope: Scope = HEALTH) -> float | None:
    return query.stats(metric, 300, scope, now=now)[statistic]


def test_counters_are_summed_per_recording_and_other_measurements_kept_one_each(
    clean_tables, nothing_measured
):
    measure.push(
        "web", ("perfdash_points_accepted_total", 100, {}), ("perfdash_points_accepted_total", 50, {})
    )
    measure.push("web", ("perfdash_points_refused_total", 7, {"reason": "cardinality"}))
    measure.push("worker", ("perfdash_ingest_lag_ms", 40, {}), ("perfdash_ingest_lag_ms", 60, {}))
    now = time.time()
    record(now)

    assert stat("perfdash_points_accepted_total", "sum", now, Scope(node="perfdash", agent="web")) == 150
    assert stat("perfdash_points_accepted_total", "count", now) == 1
    assert stat("perfdash_points_refused_total", "sum", now, HEALTH) == 7
    assert stat("perfdash_ingest_lag_ms", "count", now) == 2
    assert measure.drain() == []


def test_a_push_with_redis_away_loses_the_measurement_and_raises_nothing(monkeypatch):
    monkeypatch.setattr(measure, "client", lambda: redis.Redis(port=1, socket_connect_timeout=0.5))
    measure.push("web", ("perfdash_points_accepted_total", 1, {}))  # no exception


@pytest.mark.slow
def test_while_no_worker_stores_the_queue_grows_and_the_rule_fires(
    tmp_path, ingest_token, clean_tables, nothing_measured
):
    # The broker unreachable: batches are accepted into the outbox and nothing stores them.
    proc, url = start_server(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    try:
        for i in range(3):
            assert (
                post(url, ingest_token, {"batch_id": f"behind-{i}", "points": make_points(50, i)}).status_code
                == 202
            )
    finally:
        proc.kill()
    assert PendingBatch.objects.count() == 3

    now = time.time()
    record(now)
    assert stat("perfdash_ingest_queue_batches", "max", now) == 3
    assert stat("perfdash_ingest_oldest_batch_age_seconds", "max", now) < 60
    assert stat("perfdash_points_accepted_total", "sum", now) == 150  # pushed by the web process
    rule = seeded_rule()
    engine.evaluate(rule.pk, now=now)
    assert not AlertState.objects.filter(rule=rule, state=AlertState.State.FIRING).exists()

    later = now + 90  # a minute and a half on, still nothing stored
    record(later)
    assert stat("perfdash_ingest_oldest_batch_age_seconds", "max", later) > 60
    engine.evaluate(rule.pk, now=later)
    assert AlertState.objects.get(rule=rule).state == AlertState.State.FIRING


@pytest.mark.slow
def test_a_stored_batch_records_its_lag_from_the_202_to_the_commit(
    live_server_url, celery_worker, ingest_token, clean_tables, nothing_measured
):
    assert (
        post(live_server_url, ingest_token, {"batch_id": "lag", "points": make_points(20)}).status_code == 202
    )
    wait_until(lambda: not PendingBatch.objects.exists(), 30, "the batch to be stored")
    now = time.time()
    wait_until(
        lambda: record(now) and stat("perfdash_ingest_lag_ms", "count", now), 10, "the lag measurement"
    )
    assert 0 < stat("perfdash_ingest_lag_ms", "max", now) < 30_000
    assert stat("perfdash_points_stored_total", "sum", now, Scope(node="perfdash", agent="worker")) == 20


def test_the_ingest_lag_is_read_on_the_database_s_clock_whatever_the_worker_s(
    db, nothing_measured, monkeypatch
):
    series = [("agent_response_ms", "n", "a", "{}")]
    batch = Batch("skewed", series, np.zeros(1, np.int32), np.array([time.time() - 5]), np.array([100.0]))
    pending = PendingBatch.keep(ApiToken.issue("skewed", ["ingest"])[0].id, batch)
    behind = time.time() - 3600
    monkeypatch.setattr(time, "time", lambda: behind)  # this worker's clock, an hour behind
    store_batch({"v": 2, "pending": pending})
    lags = [value for _, _, metric, value, _ in measure.drain() if metric == "perfdash_ingest_lag_ms"]
    assert len(lags) == 1 and 0 < lags[0] < 60_000


LAG = "perfdash_compaction_lag_seconds"


def test_compaction_lag_is_how_long_deltas_have_waited_since_the_compactor_last_caught_up(
    clean_tables, nothing_measured
):
    compact.compact()  # nothing to fold: caught up now
    caught_up = time.time()
    assert gauges.read(caught_up)[LAG] == 0  # nothing waits
    assert gauges.read(caught_up)["perfdash_compaction_backlog_rows"] == 0

    record(caught_up)  # its own points leave rollup deltas behind
    later = caught_up + 45  # no compaction since
    waited = gauges.read(later)
    assert waited["perfdash_compaction_backlog_rows"] > 0
    assert 45 <= waited[LAG] < 50

    compact.compact()
    assert gauges.read(later)[LAG] == 0


def test_compaction_lag_is_stored_as_a_metric_of_perfdash(clean_tables, nothing_measured):
    compact.compact()
    now = time.time()
    record(now)
    record(now + 30)
    assert stat(LAG, "max", now + 30) >= 30


def test_compaction_lag_is_left_out_while_unknown(clean_tables, nothing_measured):
    # Deltas waiting and no catch-up noted since Redis was emptied: no figure rather than a guess.
    record(time.time())
    client().delete(compact._caught_up_key())
    assert LAG not in gauges.read(time.time())


def test_a_recording_is_noted_for_the_header(clean_tables, nothing_measured):
    now = time.time()
    record(now)
    assert gauges.silent_s(now + 12) == pytest.approx(12)


@pytest.mark.slow
def test_a_batch_stored_through_the_sweeper_records_its_lag_from_its_acceptance(
    tmp_path, celery_worker, ingest_token, clean_tables, nothing_measured
):
    # Its wake-up lost (the broker unreachable for the web process): only the sweeper stores it.
    proc, url = start_server(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    try:
        r = post(url, ingest_token, {"batch_id": "swept", "points": make_points(20)})
        assert r.status_code == 202
    finally:
        proc.kill()
    PendingBatch.objects.update(accepted_at=F("accepted_at") - timedelta(seconds=40))

    assert requeue_pending(older_than_s=0) == 1
    wait_until(lambda: not PendingBatch.objects.exists(), 60, "the swept batch to be stored")
    now = time.time()
    wait_until(
        lambda: record(now) and stat("perfdash_ingest_lag_ms", "count", now), 10, "the lag measurement"
    )
    assert stat("perfdash_ingest_lag_ms", "count", now) == 1
    assert 40_000 <= stat("perfdash_ingest_lag_ms", "max", now) < 100_000


def test_the_perfdash_board_shows_the_compaction_lag_in_seconds_before_the_backlog(db):
    Board = apps.get_model("dashboard", "Board")
    importlib.import_module("perfdash.dashboard.migrations.0003_perfdash_board").seed(apps, None)
    lag_migration = importlib.import_module("perfdash.dashboard.migrations.0005_perfdash_compaction_lag")
    lag_migration.forward(apps, None)
    lag_migration.forward(apps, None)  # once only
    queries = [p.query for p in Board.objects.get(slug="perfdash").panels.order_by("position")]
    assert len(queries) == 13 and queries.count(lag_migration.LAG[1]) == 1
    assert queries.index(lag_migration.LAG[1]) + 1 == queries.index(lag_migration.BACKLOG)
    boards.check_query(lag_migration.LAG[1])


@pytest.mark.slow
def test_when_the_only_worker_stops_the_queue_grows_and_the_rule_fires(
    tmp_path, own_queue, ingest_token, clean_tables, nothing_measured
):
    server, url = start_server(tmp_path, PERFDASH_TEST_SESSION=own_queue)
    worker = start_worker(tmp_path, "health-only", PERFDASH_TEST_SESSION=own_queue)
    rule = seeded_rule()
    try:
        assert post(url, ingest_token, {"batch_id": "kept-up", "points": make_points(20)}).status_code == 202
        wait_until(lambda: not PendingBatch.objects.exists(), 30, "the worker to store the batch")
        now = time.time()
        record(now)
        assert stat("perfdash_ingest_queue_batches", "max", now) == 0

        worker.kill()  # the only worker of this queue
        for i in range(3):
            r = post(url, ingest_token, {"batch_id": f"stopped-{i}", "points": make_points(20, i)})
            assert r.status_code == 202
    finally:
        server.kill()
        worker.kill()
    now = time.time()
    record(now)
    assert stat("perfdash_ingest_queue_batches", "max", now) == 3
    engine.evaluate(rule.pk, now=now)
    assert not AlertState.objects.filter(rule=rule, state=AlertState.State.FIRING).exists()

    later = now + 90  # still no worker a minute and a half on
    record(later)
    assert stat("perfdash_ingest_oldest_batch_age_seconds", "max", later) > 60
    engine.evaluate(rule.pk, now=later)
    assert AlertState.objects.get(rule=rule).state == AlertState.State.FIRING
