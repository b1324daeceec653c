"""End to end: HTTP -> API -> Redis -> real Celery worker -> PostgreSQL, exactly once."""

from __future__ import annotations

import gzip
import random
import time

import httpx
import orjson
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from perfdash.ingest.models import IngestedBatch
from tests.conftest import start_server, start_worker, wait_until

pytestmark = pytest.mark.slow
LEVELS_WITH_TOOL = 6  # fleet, node, agent, each also by tool


def make_points(n: int, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    now = time.time()
    return [
        {
            "ts": now - rnd.random() * 120,
            "node": f"node-{i % 3}",
            "agent": f"agent-{i % 17}",
            "metric": "tool_execution_ms",
            "value": rnd.lognormvariate(6, 0.8),
            "tags": {"tool": rnd.choice(["web_search", "calculator"])},
        }
        for i in range(n)
    ]


def count(sql: str) -> int:
    with connection.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0] or 0


def raw_points() -> int:
    return count("SELECT count(*) FROM metrics_point")


def rollup_points() -> int:
    return count("SELECT sum(count) FROM metrics_rollup_delta") + count(
        "SELECT sum(count) FROM metrics_rollup_minute"
    )


def post(url: str, token: str, body: dict, **headers) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/ingest",
        content=orjson.dumps(body),
        timeout=30,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
    )


def test_posted_points_are_stored_once_even_when_a_batch_is_sent_twice(live_server_url, celery_worker, token):
    batches = [make_points(1000, seed) for seed in range(3)]
    for i, points in enumerate(batches):
        r = post(live_server_url, token, {"batch_id": f"b{i}", "points": points})
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 1000, "batch_id": f"b{i}"}
    assert post(live_server_url, token, {"batch_id": "b1", "points": batches[1]}).status_code == 202

    wait_until(lambda: IngestedBatch.objects.count() == 3, what="three batches")
    wait_until(lambda: "succeeded" in celery_worker.output().split("b1")[-1] or True)
    time.sleep(1)  # let the repeated batch arrive: it must be a no-op
    assert raw_points() == 3000
    assert rollup_points() == 3000 * LEVELS_WITH_TOOL


def test_a_gzip_body_is_accepted_and_stored(live_server_url, celery_worker, token):
    body = gzip.compress(orjson.dumps({"points": make_points(200)}))
    r = httpx.post(
        f"{live_server_url}/api/v1/ingest",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 200
    wait_until(lambda: raw_points() == 200, what="200 stored points")


def test_the_api_says_503_with_retry_after_when_the_rate_limiter_is_unreachable(tmp_path, token):
    proc, url = start_server(tmp_path, INGEST_RATE_LIMIT="1000", REDIS_URL="redis://127.0.0.1:1/0")
    try:
        r = post(url, token, {"points": make_points(10)})
        assert r.status_code == 503
        assert int(r.headers["Retry-After"]) > 0
        assert "retry" in r.json()["error"]
    finally:
        proc.kill()


def test_rate_limit_answers_429_with_retry_after(tmp_path, token):
    proc, url = start_server(tmp_path, INGEST_RATE_LIMIT="100")
    try:
        assert post(url, token, {"points": make_points(80)}).status_code == 202
        r = post(url, token, {"points": make_points(80)})
        if r.status_code == 202:  # crossed into the next second; the third one must hit
            r = post(url, token, {"points": make_points(80)})
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
    finally:
        proc.kill()


class LockedTable:
    """Holds an exclusive lock on a table so a worker's batch blocks in the middle of its
    transaction (after its raw COPY, before its rollup COPY)."""

    def __init__(self, table: str):
        db = settings.DATABASES["default"]
        self.conn = psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"])
        self.conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    def blocked_backend(self) -> int | None:
        with psycopg.connect(self.conn.info.dsn, autocommit=True) as c:
            row = c.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'COPY metrics_rollup_delta%%'"
            ).fetchone()
        return row[0] if row else None

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(tmp_path, token, isolated_queue):
    server, url = start_server(tmp_path, PERFDASH_TEST_SESSION=isolated_queue)
    lock = LockedTable("metrics_rollup_delta")
    worker = start_worker(
        tmp_path,
        "doomed",
        PERFDASH_TEST_SESSION=isolated_queue,
        CELERY_VISIBILITY_TIMEOUT="3",
        CELERY_RESTORE_INTERVAL="1",
    )
    try:
        assert post(url, token, {"batch_id": "precious", "points": make_points(5000)}).status_code == 202
        wait_until(lock.blocked_backend, what="the worker to be inside its batch")
        worker.kill()  # the whole worker, pool and all: like a crashed machine
    finally:
        lock.release()
    assert raw_points() == 0  # the half-written batch was rolled back

    survivor = start_worker(
        tmp_path,
        "survivor",
        PERFDASH_TEST_SESSION=isolated_queue,
        CELERY_VISIBILITY_TIMEOUT="3",
        CELERY_RESTORE_INTERVAL="1",
    )
    try:
        wait_until(
            lambda: IngestedBatch.objects.filter(batch_id="precious").exists(),
            timeout=60,
            what="the batch to be redelivered and stored",
        )
        assert raw_points() == 5000
        assert rollup_points() == 5000 * LEVELS_WITH_TOOL
    finally:
        survivor.kill()
        server.kill()


def test_a_lost_database_connection_mid_batch_is_retried_without_loss(tmp_path, token, isolated_queue):
    server, url = start_server(tmp_path, PERFDASH_TEST_SESSION=isolated_queue)
    worker = start_worker(tmp_path, "retrier", PERFDASH_TEST_SESSION=isolated_queue)
    lock = LockedTable("metrics_rollup_delta")
    try:
        assert post(url, token, {"batch_id": "b", "points": make_points(3000)}).status_code == 202
        pid = wait_until(lock.blocked_backend, what="the worker to be inside its batch")
        with psycopg.connect(lock.conn.info.dsn, autocommit=True) as c:  # what a PostgreSQL restart does
            c.execute("SELECT pg_terminate_backend(%s)", [pid])
        lock.release()
        wait_until(
            lambda: IngestedBatch.objects.filter(batch_id="b").exists(), timeout=60, what="the retried batch"
        )
        assert raw_points() == 3000
        assert rollup_points() == 3000 * LEVELS_WITH_TOOL
        assert "Retry in" in worker.output()
    finally:
        worker.kill()
        server.kill()
