"""Shared set-up for the benchmarks: a separate database and Redis db, subprocesses for
the web server and workers, and a synthetic fleet's points."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perfdash_bench")
# The query benchmark keeps its large data set in a database of its own between runs.
QUERY_BENCH_DB = os.environ.get(
    "QUERY_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perfdash_bench_query"
)
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
TOOLS = ["web_search", "calculator", "code_exec", "browser", "sql_query", "file_read"]
MODELS = [("acme", "m-large"), ("acme", "m-small"), ("globex", "g-pro")]


def setup_django(database_url: str = BENCH_DB) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = BENCH_REDIS
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perfdash.settings")
    sys.path.insert(0, str(ROOT))
    from perfdash.run import check_services

    problem = check_services(database_url, BENCH_REDIS)
    if problem:
        sys.exit(problem)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def env(database_url: str = BENCH_DB) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": BENCH_REDIS,
        "DJANGO_SETTINGS_MODULE": "perfdash.settings",
        "LOG_LEVEL": "WARNING",
    }


def spawn(cmd: list[str], log: str, database_url: str = BENCH_DB) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env(database_url),
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def spawn_web(port: int, workers: int = 1) -> subprocess.Popen:
    """A web server started as `make run` starts one (perfdash.run.web_server)."""
    from perfdash.run import web_server

    cmd = [*web_server(str(port)), "--workers", str(workers), "--log-level", "warning"]
    return spawn(cmd, f"/tmp/bench-web-{port}.log")


def spawn_worker(queues: str = "ingest", concurrency: int = 2, pool: str = "prefork") -> subprocess.Popen:
    """A Celery worker started as `make run` starts one (perfdash.run.worker_command)."""
    from perfdash.run import worker_command

    return spawn(worker_command(queues, concurrency, pool=pool), f"/tmp/bench-worker-{queues}.log")


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def fleet_points(n: int, agents: int, nodes: int, now: float, seed: int, spread_s: float = 5.0) -> dict:
    """One node's batch: `n` points from its agents over the last `spread_s` seconds, a mix of
    the well-known metrics with per-tool and per-model latencies."""
    rng = np.random.default_rng(seed)
    node = seed % nodes
    per_node = agents // nodes
    agent = rng.integers(0, per_node, n)
    kind = rng.integers(0, 5, n)
    values = rng.lognormal(5.5, 0.9, n)
    ts = np.round(now - rng.uniform(0, spread_s, n), 3)
    points = []
    for i in range(n):
        k = kind[i]
        p = {"ts": float(ts[i]), "node": f"node-{node}", "agent": f"agent-{node}-{agent[i]}"}
        if k == 0:
            p.update(metric="tool_execution_ms", value=float(values[i]), tags={"tool": TOOLS[agent[i] % 6]})
        elif k == 1:
            provider, model = MODELS[agent[i] % 3]
            p.update(
                metric="llm_call_ms", value=float(values[i] * 3), tags={"provider": provider, "model": model}
            )
        elif k == 2:
            p.update(metric="agent_response_ms", value=float(values[i] * 5))
        elif k == 3:
            p.update(metric="memory_op_ms", value=float(values[i] / 20), tags={"op": "read"})
        else:
            p.update(metric="agent_memory_bytes", value=float(values[i] * 1e5))
        points.append(p)
    return {"points": points}


def encode(body: dict) -> bytes:
    return orjson.dumps(body)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named group of process trees; the
    name "postgres" and "redis" also count every process of that name on the machine."""
    import psutil

    out = {}
    for name, roots in groups.items():
        procs = []
        for pid in roots:
            try:
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        if name == "bench client":
            procs.append(psutil.Process())  # itself only: web and worker are its children
        if name in ("postgres", "redis"):
            procs += [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith(name)]
        total = 0.0
        for p in {p.pid: p for p in procs}.values():
            try:
                t = p.cpu_times()
                total += t.user + t.system + getattr(t, "children_user", 0) + getattr(t, "children_system", 0)
            except psutil.NoSuchProcess:
                pass
        out[name] = total
    return out


def reset_store() -> None:
    """Empty the benchmark database's points, rollups and batch records."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE metrics_point, metrics_rollup_delta, metrics_rollup_minute, metrics_rollup_hour, "
            "ingest_ingestedbatch, ingest_failedbatch"
        )
