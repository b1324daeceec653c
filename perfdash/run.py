"""`make run`: check the services, migrate, and supervise web, ingest, worker and beat.

Two web servers run the same application: one for browsers (`PORT`, 8000) and one that the
collectors post to (`INGEST_PORT`, 8001). Parsing 10,000 points a second in the process that
computes the live pages slowed the average live update by 6-8 ms (bench/dashboard.py); either
server accepts both kinds of request.

Ctrl-C (or SIGTERM) stops every child and waits for it; if one child dies, the rest are
stopped too, so a half-running system never lingers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import environ

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Until something listens on the port (or the process has exited, or time is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)


# Worker processes (WORKER_CONCURRENCY): three, not two, on two cores: a small batch waited
# behind two big ones (live freshness, bench/README.md: 202 -> storing p95 15-51 ms with two,
# 12 with three).
WORKER_PROCESSES = 3


def web_server(port: str) -> list[str]:
    """The uvicorn command line of a web server (bench/ starts the same)."""
    return [
        str(BIN / "uvicorn"),
        "perfdash.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--no-access-log",
        # Live updates are ~12 kB of JSON a second: compressing them once per socket cost
        # more server CPU than anything else in the fan-out (bench/dashboard.py).
        "--ws-per-message-deflate",
        "false",
    ]


def check_services(database_url: str, redis_url: str) -> str | None:
    """None if PostgreSQL and Redis answer (creating the database if it is missing), else
    a one-line reason."""
    import psycopg
    import redis

    db = environ.Env.db_url_config(database_url)
    conninfo = dict(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        connect_timeout=3,
    )
    try:
        psycopg.connect(dbname=db["NAME"], **conninfo).close()
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            return (
                f"PostgreSQL is not reachable at {_safe(database_url)} — start one (e.g. `docker compose "
                f"-f docker/compose.yaml up -d postgres`) or set DATABASE_URL in .env"
            )
        with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError:
        return (
            f"Redis is not reachable at {_safe(redis_url)} — start one (e.g. `docker compose "
            f"-f docker/compose.yaml up -d redis`) or set REDIS_URL in .env"
        )
    return None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{creds}{at}{host}"


def main() -> int:
    env = environ.Env()
    environ.Env.read_env(ROOT / ".env", overwrite=False)
    database_url = env("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/perfdash")
    redis_url = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
    port = env("PORT", default="8000")
    ingest_port = env("INGEST_PORT", default=str(int(port) + 1))
    problem = check_services(database_url, redis_url)
    if problem:
        print(f"perfdash: {problem}", file=sys.stderr)
        return 1

    python = str(BIN / "python")
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    subprocess.run([python, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    commands = {
        "web": web_server(port),
        "ingest": web_server(ingest_port),
        "worker": [
            str(BIN / "celery"),
            "-A",
            "perfdash",
            "worker",
            "-Q",
            "ingest,alerts,notify,forecast",
            "-c",
            env("WORKER_CONCURRENCY", default=str(WORKER_PROCESSES)),
            "-l",
            "warning",
        ],
        "beat": [
            str(BIN / "celery"),
            "-A",
            "perfdash",
            "beat",
            "-l",
            "warning",
            "-s",
            str(ROOT / ".celerybeat-schedule"),
        ],
    }
    login = "create one with `.venv/bin/python manage.py createsuperuser`"
    child_env = dict(os.environ)
    if env.bool("DEMO", default=True):
        demo = json.loads(
            subprocess.run(
                [python, "manage.py", "demo_setup"], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
        )
        login = demo["login"]
        child_env["PERFDASH_TOKEN"] = demo["token"]  # in the environment, not on the command line (ps)
        commands["demo fleet"] = [
            python,
            "-m",
            "collectors",
            "simulate",
            "--agents",
            env("DEMO_AGENTS", default="200"),
            "--nodes",
            env("DEMO_NODES", default="4"),
            "--duration",
            "0",
            "--url",
            f"http://127.0.0.1:{ingest_port}",
            *(["--backfill", "6h"] if demo["first_start"] else []),
        ]
    # The web servers first: the demo fleet's first batches would otherwise meet a closed port.
    children = {
        name: subprocess.Popen(commands.pop(name), cwd=ROOT, env=child_env) for name in ("web", "ingest")
    }
    wait_for_port(int(port), children["web"])
    wait_for_port(int(ingest_port), children["ingest"])
    children.update({name: subprocess.Popen(cmd, cwd=ROOT, env=child_env) for name, cmd in commands.items()})
    print(
        f"perfdash: running on http://127.0.0.1:{port}/ — log in there ({login}); collectors post to "
        f"http://127.0.0.1:{ingest_port}; Ctrl-C stops everything"
    )

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        dead = [n for n, p in children.items() if p.poll() is not None]
        if dead:
            print(f"perfdash: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
            break
        time.sleep(0.5)
    for p in children.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in children.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    return 0 if stopping else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
