"""A web server keeps at most DB_POOL_MAX PostgreSQL connections, however many requests come at
once: under ASGI each request runs on a thread of its own, and persistent connections would
stay one per thread until PostgreSQL refuses everyone (max_connections)."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import start_server

pytestmark = pytest.mark.slow


def connections_named(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name])
        return cursor.fetchone()[0]


def test_a_burst_of_requests_uses_at_most_the_pool(transactional_db, tmp_path):
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}?application_name=pool-test"
    proc, base = start_server(tmp_path, DATABASE_URL=url, DB_POOL_MAX="3")
    try:

        def ask(_: int) -> int:  # each request looks its token up in PostgreSQL
            return httpx.get(
                base + "/api/v1/stats", headers={"Authorization": "Bearer nope"}, timeout=30
            ).status_code

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, range(96)))
        assert answers == [401] * 96
        assert 1 <= connections_named("pool-test") <= 3
    finally:
        proc.kill(signal.SIGTERM)


def test_perfdash_connections_run_with_postgresqls_jit_off(db):
    with connection.cursor() as cursor:  # long-window reads would spend as long compiling as reading
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
