"""A flood of new names against the cardinality limits (issue 14 §1).

Starts, on a database of its own (`perfdash_bench_cardinality`, emptied at each run) and Redis
db 13, an ingest server, a pages server and a Celery worker as `make run` does, and stores a
fleet of 1000 agents on 4 nodes (30 minutes of history). A light stream from that fleet keeps
flowing throughout (1000 points/s), and rollup deltas are compacted every 5 s as beat does.
Then, with another token, a flood of `--names` (100,000) distinct names goes through the public
API in 10,000-point gzip batches: new agent names, new `tool` values and new metric names in
turn. Before, during and after the flood it measures:

- a normal one-point batch's time to be readable: from its POST to the first read API answer
  that holds it (`/api/v1/stats`, polled every 10 ms);
- the first paint of the overview and tools pages (`/data/overview`, `/data/tools`, 1 h);
- web and worker memory (RSS of each process tree), before and after.

It prints each figure with its ratio to "before" in the same run. Targets: readable and first
paint during and after the flood ≤ 2x before; memory after ≤ 1.5x before.

    .venv/bin/python bench/cardinality.py            # ~2 min
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

import common
import httpx
import orjson
import psutil

DB = os.environ.get(
    "CARDINALITY_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perfdash_bench_cardinality"
)
AGENTS, NODES = 1000, 4
BATCH = 10_000
PHASES = ("before", "during", "after")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", type=int, default=100_000, help="distinct names in the flood")
    ap.add_argument("--probes", type=int, default=10, help="probes before and after the flood")
    ap.add_argument("--port", type=int, default=8131)
    return ap.parse_args()


def fresh_database() -> None:
    import psycopg

    # The database DB names, dropped through the same server's maintenance database.
    name = urlsplit(DB).path.lstrip("/")
    with psycopg.connect(urlsplit(DB)._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1"
    common.setup_django(DB)


def rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6


def store_size() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM metrics_series), (SELECT count(*) FROM metrics_rollupkey), "
            "pg_database_size(current_database())"
        )
        series, keys, size = cur.fetchone()
    return {"series": series, "rollup keys": keys, "database MB": size // 1_000_000}


def pending() -> int:
    from perfdash.ingest.models import PendingBatch

    return PendingBatch.objects.count()


def gz(points: list[dict]) -> bytes:
    return gzip.compress(orjson.dumps({"points": points}), 1)


def flood_bodies(names: int, now: float) -> list[tuple[str, bytes]]:
    """(kind, body) of 10,000 distinct names each: new agents, new tool values, new metrics."""
    kinds = ["agent names", "tool values", "metric names"]
    bodies = []
    for b in range(names // BATCH):
        kind = kinds[b % 3]
        points = []
        for i in range(BATCH):
            p = {
                "ts": now,
                "node": "node-0",
                "agent": "agent-0-0",
                "metric": "tool_execution_ms",
                "value": 1.0,
            }
            if kind == "agent names":
                p.update(metric="agent_response_ms", agent=f"flood-{b}-{i}")
            elif kind == "tool values":
                p["tags"] = {"tool": f"flood-{b}-{i}"}
            else:
                p["metric"] = f"flood_{b}_{i}"
            points.append(p)
        bodies.append((kind, gz(points)))
    return bodies


class Bench:
    def __init__(self, args: argparse.Namespace, tokens: dict[str, str], cookie: str):
        self.args = args
        self.ingest = f"http://127.0.0.1:{args.port}"
        self.pages = f"http://127.0.0.1:{args.port + 1}"
        self.http = httpx.Client(timeout=120)
        self.tokens = tokens
        self.cookie = cookie
        self.probe_value = 1e9
        self.samples: dict[str, dict[str, list[float]]] = {p: {} for p in PHASES}

    def post(self, token: str, body: bytes) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self.tokens[token]}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        return self.http.post(f"{self.ingest}/api/v1/ingest", content=body, headers=headers)

    def readable(self) -> float:
        """Seconds from a one-point batch's POST to the read API's first answer holding it."""
        self.probe_value += 1000
        value = self.probe_value
        point = {"ts": time.time(), "node": "node-0", "agent": "agent-0-0", "metric": "agent_response_ms"}
        started = time.perf_counter()
        r = self.post("fleet", gz([{**point, "value": value}]))
        assert r.status_code == 202, r.text
        url = f"{self.pages}/api/v1/stats?metric=agent_response_ms&window=5m&agent=agent-0-0"
        auth = {"Authorization": f"Bearer {self.tokens['reader']}"}
        while (self.http.get(url, headers=auth).json().get("max") or 0) < value:
            if time.perf_counter() - started > 120:
                raise SystemExit("a probe was not readable within 120 s")
            time.sleep(0.01)
        return time.perf_counter() - started

    def paint(self, page: str) -> float:
        started = time.perf_counter()
        r = self.http.get(f"{self.pages}/data/{page}?window=1h", headers={"Cookie": self.cookie})
        assert r.status_code == 200, r.status_code
        return time.perf_counter() - started

    def measure(self, phase: str, until: Callable[[], bool] | None = None) -> None:
        """A probe and a first paint of each page in turn: `--probes` times, or while `until`
        is false (at least once)."""
        got = self.samples[phase]
        n = 0
        while n < self.args.probes if until is None else (n == 0 or not until()):
            got.setdefault("normal batch readable", []).append(self.readable())
            for page in ("overview", "tools"):
                got.setdefault(f"{page} first paint", []).append(self.paint(page))
            n += 1


class Background(threading.Thread):
    """Calls `step` every `every` seconds until stopped."""

    def __init__(self, step: Callable[[], None], every: float):
        super().__init__(daemon=True)
        self.step, self.every, self.stopped = step, every, threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.monotonic()
            self.step()
            self.stopped.wait(max(0.0, self.every - (time.monotonic() - started)))


def setup() -> tuple[dict[str, str], str]:
    from django.contrib.auth.models import User
    from django.test import Client

    from perfdash.api.models import ApiToken

    tokens = {
        "fleet": ApiToken.issue("fleet", ["ingest"])[1],
        "flood": ApiToken.issue("flood", ["ingest"])[1],
        "reader": ApiToken.issue("reader", ["read"])[1],
    }
    client = Client()
    client.force_login(User.objects.create_user("bench-viewer"))
    return tokens, f"sessionid={client.cookies['sessionid'].value}"


def main() -> None:
    args = parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    fresh_database()
    from perfdash.metrics.tasks import compact_rollups
    from perfdash.run import WORKER_PROCESSES, web_server, worker_command

    tokens, cookie = setup()
    web = [*web_server(str(args.port)), "--log-level", "warning"]
    ingest = common.spawn(web, "/tmp/bench-card-ingest.log", DB)
    pages_cmd = [*web_server(str(args.port + 1)), "--log-level", "warning"]
    pages = common.spawn(pages_cmd, "/tmp/bench-card-pages.log", DB)
    worker = common.spawn(worker_command("ingest", WORKER_PROCESSES), "/tmp/bench-card-worker.log", DB)
    bench = Bench(args, tokens, cookie)
    compactor = Background(compact_rollups.delay, 5)
    statuses: dict[str, Counter] = {p: Counter() for p in PHASES}
    phase = ["before"]
    i = [0]

    def push_fleet() -> None:
        body = gz(common.fleet_points(1000, AGENTS, NODES, time.time(), i[0] % 40, 1.0)["points"])
        i[0] += 1
        statuses[phase[0]][bench.post("fleet", body).status_code] += 1

    fleet = Background(push_fleet, 1.0)
    try:
        common.wait_for(lambda: _up(bench.ingest) and _up(bench.pages), 30, "the web servers")
        now = time.time()
        print(f"storing the fleet: {AGENTS} agents on {NODES} nodes, 30 minutes…")
        for seed in range(40):
            history = common.fleet_points(BATCH, AGENTS, NODES, now, seed, spread_s=1800)["points"]
            assert bench.post("fleet", gz(history)).status_code == 202
        common.wait_for(lambda: pending() == 0, 300, "the fleet's history to be stored")
        compactor.start()
        fleet.start()
        time.sleep(10)
        bench.measure("before")  # once to warm up the caches a page read fills
        bench.samples["before"].clear()
        bench.measure("before")
        memory = {"before": _memory(ingest, pages, worker)}
        sizes = {"before": store_size()}

        bodies = flood_bodies(args.names, time.time())
        outcome: Counter = Counter()
        phase[0] = "during"

        def send_flood() -> None:
            for kind, body in bodies:
                r = bench.post("flood", body)
                limit = r.json().get("limit", "") if r.status_code != 202 else ""
                outcome[kind, r.status_code, limit] += 1

        print(f"flood: {args.names:,} distinct names in {len(bodies)} batches…")
        flood = threading.Thread(target=send_flood)
        flood_started = time.perf_counter()
        flood.start()
        bench.measure("during", until=lambda: not flood.is_alive() and pending() == 0)
        flood.join()
        flood_s = time.perf_counter() - flood_started

        phase[0] = "after"
        time.sleep(10)  # a compaction pass or two over what the flood left
        bench.measure("after")
        memory["after"] = _memory(ingest, pages, worker)
        sizes["after"] = store_size()
    finally:
        fleet.stopped.set()
        compactor.stopped.set()
        common.stop(ingest, pages, worker)

    report(bench.samples, memory, sizes, outcome, statuses, flood_s)


def _memory(ingest, pages, worker) -> dict[str, float]:
    return {
        "ingest web process": rss_mb(ingest.pid),
        "pages web process": rss_mb(pages.pid),
        "worker (3 processes)": rss_mb(worker.pid),
    }


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/v1/stats", timeout=1).status_code == 401
    except httpx.TransportError:
        return False


def report(samples, memory, sizes, outcome, statuses, flood_s: float) -> None:
    print(f"\nflood answers ({flood_s:.1f} s from the first flood POST to the last accepted batch stored):")
    for (kind, status, limit), n in sorted(outcome.items()):
        print(f"  {kind:<13} {status} {limit or '':<22} {n} batch(es)")
    for p in PHASES:
        print(f"fleet batches {p}: {dict(statuses[p])}")
    print(
        f"\n{'median, ms':<26}{'before':>9}{'during':>9}{'after':>9}{'during/before':>15}{'after/before':>14}"
    )
    for what in samples["before"]:
        m = {p: statistics.median(samples[p][what]) * 1000 for p in PHASES}
        print(
            f"{what:<26}{m['before']:9.0f}{m['during']:9.0f}{m['after']:9.0f}"
            f"{m['during'] / m['before']:15.2f}{m['after'] / m['before']:14.2f}"
        )
    print("  (target: during and after <= 2x before; samples: " + _counts(samples) + ")")
    print(f"\n{'memory, MB (RSS)':<26}{'before':>9}{'after':>9}{'after/before':>14}")
    for what, before in memory["before"].items():
        after = memory["after"][what]
        print(f"{what:<26}{before:9.0f}{after:9.0f}{after / before:14.2f}")
    print("  (target: after <= 1.5x before)")
    print(f"\n{'store':<26}{'before':>12}{'after':>12}")
    for what, before in sizes["before"].items():
        print(f"{what:<26}{before:12,}{sizes['after'][what]:12,}")


def _counts(samples) -> str:
    return ", ".join(f"{p} {len(samples[p]['normal batch readable'])} probes" for p in PHASES)


if __name__ == "__main__":
    main()
