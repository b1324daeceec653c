"""The test world: tokens, a real uvicorn server and real Celery workers as subprocesses,
all on the test database and Redis db 15."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection

from perfdash.api.models import ApiToken
from perfdash.dashboard import boards
from perfdash.detect import anomaly
from perfdash.metrics import keys, partitions, store
from perfdash.run import web_server, worker_command

ROOT = Path(__file__).resolve().parent.parent
BIG_TABLES = ["metrics_point", "metrics_rollup_delta", "metrics_rollup_minute", "metrics_rollup_hour"]


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    # Ids and partitions made inside a rolled-back test transaction must not be remembered.
    store.forget()
    keys.forget()
    partitions.forget()
    boards.forget()  # panels reused across viewers (boards.reuse_s)
    anomaly.forget()  # baselines fitted once an hour


@pytest.fixture
def clean_tables(transactional_db) -> None:
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(BIG_TABLES)}")
        # Earlier tests' flushes removed series and keys under the session's worker and servers:
        # moving the generation on makes them drop the ids they cached, as garbage collection does.
        cur.execute("UPDATE metrics_keyversion SET generation = generation + 1 WHERE id = 1")


@pytest.fixture
def ingest_token(db) -> str:
    return ApiToken.issue("collector", ["ingest"])[1]


@pytest.fixture
def read_token(db) -> str:
    return ApiToken.issue("reader", ["read"])[1]


def server_env(**extra: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = 30, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Proc:
    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.popen = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log.read_text()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)


def start_server(tmp: Path, port: int | None = None, **env: str) -> tuple[Proc, str]:
    port = port or free_port()
    proc = Proc(web_server(str(port)), server_env(**env), tmp / f"uvicorn-{port}.log")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"server exited:\n{proc.output()}")
        try:
            return httpx.get(url + "/api/v1/stats", timeout=1).status_code == 401
        except httpx.TransportError:
            return False

    wait_until(up, 30, "the server to start")
    return proc, url


def start_worker(tmp: Path, name: str, queues: str = "ingest", **env: str) -> Proc:
    proc = Proc(
        worker_command(queues, 1, name=name, loglevel="info"), server_env(**env), tmp / f"worker-{name}.log"
    )
    wait_until(lambda: "ready." in proc.output() or proc.popen.poll() is not None, 30, "the worker")
    assert proc.popen.poll() is None, proc.output()
    return proc


@pytest.fixture(scope="session")
def live_server_url(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[str]:
    proc, url = start_server(tmp_path_factory.mktemp("server"))
    yield url
    proc.kill(signal.SIGTERM)


def drop_keys(prefix: str) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


@pytest.fixture(scope="session")
def redis_queue() -> Iterator[None]:
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    drop_keys(prefix)
    yield
    drop_keys(prefix)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, redis_queue, tmp_path_factory) -> Iterator[Proc]:
    proc = start_worker(tmp_path_factory.mktemp("worker"), "main")
    yield proc
    proc.kill(signal.SIGTERM)
