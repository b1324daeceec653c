"""`make run`: check the services, migrate, and keep web, ingest, worker and beat running.

Two web servers run the same application: one for browsers (`PORT`, 8000) and one that the
collectors post to (`INGEST_PORT`, 8001), so that parsing incoming points does not slow the
live pages; either server accepts both kinds of request.

A child that dies (a worker killed by the OOM killer, say) is started again after a pause
while the others keep running (supervisor.py); the batches a killed worker had taken are
queued again by the next sweep (every CELERY_RESTORE_INTERVAL) once CELERY_VISIBILITY_TIMEOUT
has passed since they were taken (perfdash/settings.py). Ctrl-C (or SIGTERM) stops every
child and waits for it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import environ

from perfdash.lib.secrets import mask_url
from perfdash.run.supervisor import Program, Supervisor

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")
QUEUES = "ingest,alerts,notify,forecast"
# Worker processes (WORKER_CONCURRENCY): three, not two, on two cores: with two, a
# collector's small batch can wait behind two big ones, and live pages fall behind.
WORKER_PROCESSES = 3
# The release the demo fleet runs and announces with a deploy marker.
DEMO_VERSION = "1.3.0"
# The release its history ran, and how much slower the new one is.
DEMO_PREVIOUS_VERSION = "1.2.0"
DEMO_RELEASE_SLOWDOWN = "12%"
DEMO_SLOW_AGENT = "agent-7"
DEMO_LEAKING_AGENT = "agent-3"
NO_LOGIN = "create one with `.venv/bin/python manage.py createsuperuser`"


@dataclass(frozen=True)
class Config:
    database_url: str
    redis_url: str
    port: int
    ingest_port: int
    worker_concurrency: int
    demo: bool
    demo_agents: int
    demo_nodes: int

    @classmethod
    def from_env(cls) -> Config:
        env = environ.Env()
        environ.Env.read_env(ROOT / ".env", overwrite=False)
        port = env.int("PORT", default=8000)
        return cls(
            database_url=env("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/perfdash"),
            redis_url=env("REDIS_URL", default="redis://127.0.0.1:6379/0"),
            port=port,
            ingest_port=env.int("INGEST_PORT", default=port + 1),
            worker_concurrency=env.int("WORKER_CONCURRENCY", default=WORKER_PROCESSES),
            demo=env.bool("DEMO", default=True),
            demo_agents=env.int("DEMO_AGENTS", default=200),
            demo_nodes=env.int("DEMO_NODES", default=4),
        )


@dataclass(frozen=True)
class Demo:
    """What `manage.py demo_setup` printed."""

    token: str
    first_start: bool
    login: str


def web_server(port: str) -> list[str]:
    """The uvicorn command line of a web server (bench/ and the tests start the same)."""
    return [
        str(BIN / "uvicorn"),
        "perfdash.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--no-access-log",
        # Live updates are JSON every second: compressing them once per socket would cost
        # more server CPU than anything else in the fan-out.
        "--ws-per-message-deflate",
        "false",
    ]


def worker_command(
    queues: str, concurrency: int, name: str | None = None, loglevel: str = "warning", pool: str = "prefork"
) -> list[str]:
    """The Celery worker command line (bench/ and the tests start the same); `name` makes
    the node name `name@<host>`."""
    return [
        str(BIN / "celery"),
        "-A",
        "perfdash",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-l",
        loglevel,
        # Nothing to gossip or mingle with (one worker per system, or per test); mingle
        # would also wait for replies from other workers at every start.
        "--without-gossip",
        "--without-mingle",
        *(["-n", f"{name}@%h"] if name else []),
    ]


def beat_command() -> list[str]:
    return [
        str(BIN / "celery"),
        "-A",
        "perfdash",
        "beat",
        "-l",
        "warning",
        "-s",
        str(ROOT / ".celerybeat-schedule"),
    ]


def demo_fleet(config: Config, demo: Demo) -> Program:
    command = [
        PYTHON,
        "-m",
        "collectors",
        "simulate",
        "--agents",
        str(config.demo_agents),
        "--nodes",
        str(config.demo_nodes),
        "--duration",
        "0",
        "--url",
        f"http://127.0.0.1:{config.ingest_port}",
        # A release and an A/B test with a real difference, for the comparisons to find.
        "--version",
        DEMO_VERSION,
        "--variants",
        "a,b",
        "--slowdown",
        "b=15%",
        "--slowdown",
        f"{DEMO_VERSION}={DEMO_RELEASE_SLOWDOWN}",
        # An agent slower than its peers, for the outlier panel and rules to find.
        "--slowdown",
        f"{DEMO_SLOW_AGENT}=100%",
        # An agent whose memory starts leaking minutes in, for the growth outliers to find young.
        "--leak",
        f"{DEMO_LEAKING_AGENT}=5m",
    ]
    # Backfill batches carry fresh ids: a restarted fleet that backfilled again would store
    # the history twice; and a later start runs the same release, so it marks no deploy.
    if not demo.first_start:
        return Program("demo fleet", command, restart_command=command)
    # The history runs the release before until an hour ago, and a deploy marker marks the
    # switch: its comparison and verification have an hour on either side to find the slowdown.
    release = ["--previous-version", DEMO_PREVIOUS_VERSION, "--deployed-ago", "1h"]
    deploy = ["--backfill", "6h", *release, "--deploy-event", DEMO_VERSION]
    return Program("demo fleet", [*command, *deploy], restart_command=command)


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
                f"PostgreSQL is not reachable at {mask_url(database_url)} — start one (e.g. `docker compose "
                f"-f docker/compose.yaml up -d postgres`) or set DATABASE_URL in .env"
            )
        with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError:
        return (
            f"Redis is not reachable at {mask_url(redis_url)} — start one (e.g. `docker compose "
            f"-f docker/compose.yaml up -d redis`) or set REDIS_URL in .env"
        )
    return None


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def check_ports(ports: dict[str, int]) -> str | None:
    """None if nothing listens on the ports yet (keyed by the setting that chooses each),
    else a one-line reason. A web server that cannot bind would only be restarted forever."""
    for setting, port in ports.items():
        if _listening(port):
            return f"port {port} is taken by another program — stop it or set {setting} in .env"
    return None


def migrate() -> None:
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)


def collect_static() -> None:
    subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, check=True)


def ensure_demo_login() -> Demo:
    """A fresh token for the demo fleet, and an admin login if there is none."""
    out = subprocess.run(
        [PYTHON, "manage.py", "demo_setup"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return Demo(**json.loads(out))


def child_env(demo: Demo | None) -> dict[str, str]:
    if demo is None:
        return dict(os.environ)
    return {**os.environ, "PERFDASH_TOKEN": demo.token}  # not on the command line, where ps shows it


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 30.0) -> bool:
    """Until something listens on the port; False if the process exits first. A slow start
    is not a failure: after timeout_s it stops waiting and answers True."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if _listening(port):
            return True
        time.sleep(0.2)
    return process.poll() is None


def start_children(supervisor: Supervisor, config: Config, demo: Demo | None) -> str | None:
    """The web servers first, each listening before the rest start (the demo fleet's first
    batches would otherwise meet a closed port); a one-line reason if one did not start."""
    for name, port in (("web", config.port), ("ingest", config.ingest_port)):
        listening = wait_for_port(port, supervisor.start(Program(name, web_server(str(port)))))
        if supervisor.stopping:
            return None
        if not listening:
            return f"the {name} server exited before listening on port {port} (its output is above)"
    supervisor.start(Program("worker", worker_command(QUEUES, config.worker_concurrency)))
    supervisor.start(Program("beat", beat_command()))
    if demo is not None:
        supervisor.start(demo_fleet(config, demo))
    return None


def announce(config: Config, demo: Demo | None) -> None:
    login = demo.login if demo else NO_LOGIN
    print(
        f"perfdash: running on http://127.0.0.1:{config.port}/ — log in there ({login}); collectors "
        f"post to http://127.0.0.1:{config.ingest_port}; Ctrl-C stops everything",
        flush=True,
    )


def fail(problem: str) -> int:
    print(f"perfdash: {problem}", file=sys.stderr)
    return 1


def main() -> int:
    config = Config.from_env()
    problem = check_services(config.database_url, config.redis_url) or check_ports(
        {"PORT": config.port, "INGEST_PORT": config.ingest_port}
    )
    if problem:
        return fail(problem)
    migrate()
    collect_static()
    demo = ensure_demo_login() if config.demo else None
    supervisor = Supervisor(ROOT, child_env(demo))
    supervisor.stop_on_signals()
    try:
        problem = start_children(supervisor, config, demo)
        if problem:
            return fail(problem)
        announce(config, demo)
        supervisor.run()
    finally:
        supervisor.shutdown()
    return 0
