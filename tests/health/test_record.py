"""perfdash's own health: measurements pushed by processes, gauges read from the tables, all
stored under the node `perfdash` and watched by the seeded rule "ingest is more than 60 s
behind"."""

from __future__ import annotations

import importlib
import time

import pytest
import redis
from django.apps import apps

from perfdash.alerts import engine
from perfdash.alerts.models import AlertRule, AlertState
from perfdash.health import measure
from perfdash.health.record import record
from perfdash.ingest.models import PendingBatch
from perfdash.metrics import query
from perfdash.metrics.scope import Scope
from tests.conftest import start_server, wait_until
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
