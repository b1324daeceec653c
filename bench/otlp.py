"""End-to-end OTLP throughput: OTLP/HTTP protobuf exports -> /v1/metrics -> Celery -> committed
rollups, next to ingest API v1 in the same run on the same server and worker.

A fleet of agents, each exporting what the GenAI conventions describe (operation durations
per model and tool, token usage, a gauge and a counter) as explicit-bucket histograms with
cumulative temporality, the SDKs' defaults. Exports are posted as OTel Collectors forward
them: `--agents-per-request` agents' exports in one request (1: each agent exporting itself).

    .venv/bin/python bench/otlp.py                       # ~2 min
    .venv/bin/python bench/otlp.py --agents-per-request 1 --intervals 3
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import logging
import os
import time

import common
import httpx
import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

OTLP_DB = os.environ.get("OTLP_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perfdash_bench_otlp")
BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576]
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--intervals", type=int, default=6, help="export intervals posted as fast as taken")
    ap.add_argument("--agents-per-request", type=int, default=50)
    ap.add_argument("--values", type=int, default=20, help="values recorded per histogram per interval")
    ap.add_argument("--v1-points", type=int, default=1_000_000)
    ap.add_argument(
        "--paced-s", type=float, default=30, help="then this long at one export per agent per 10 s"
    )
    ap.add_argument("--warm-up", type=int, default=5, help="rounds of both before measuring")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--worker-concurrency", type=int, default=2)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--port", type=int, default=8124)
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="instead: both paths in this process, CPU per stage (no HTTP, Celery or second process)",
    )
    return ap.parse_args()


class Agent:
    """One agent's cumulative instruments: bucket counts, sums, min and max per stream."""

    def __init__(self, i: int, nodes: int, rng: np.random.Generator):
        self.node, self.name = f"node-{i % nodes}", f"agent-{i}"
        self.rng = rng
        self.streams: dict[tuple, list] = {}
        self.calls = 0

    def record(self, key: tuple, bounds: list[float], values: np.ndarray) -> None:
        counts, total, lo, hi = self.streams.get(
            key, (np.zeros(len(bounds) + 1, np.int64), 0.0, np.inf, -np.inf)
        )
        counts = counts + np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds) + 1)
        self.streams[key] = (counts, total + values.sum(), min(lo, values.min()), max(hi, values.max()))

    def interval(self, values: int) -> int:
        """Record one interval's values; how many."""
        rng, n = self.rng, values
        for provider, model in common.MODELS:
            self.record(("chat", provider, model), BOUNDS, rng.lognormal(0, 0.6, n))
            for kind in ("input", "output"):
                self.record(
                    ("tokens", provider, model, kind), TOKEN_BOUNDS, rng.integers(10, 2000, n).astype(float)
                )
        for tool in common.TOOLS:
            self.record(("execute_tool", tool), BOUNDS, rng.lognormal(-1, 0.8, n))
        self.record(("invoke_agent",), BOUNDS, rng.lognormal(1, 0.5, n))
        self.record(("retrieval",), BOUNDS, rng.lognormal(-4, 0.5, n))
        self.calls += n
        return n * len(self.streams)

    def export(self, rm, start_ns: int, now_ns: int) -> int:
        """This agent's export into a ResourceMetrics; its number of data points."""
        for key, value in (("host.name", self.node), ("gen_ai.agent.id", self.name)):
            rm.resource.attributes.add(key=key).value.string_value = value
        scope = rm.scope_metrics.add()
        scope.scope.name = "bench"
        duration = scope.metrics.add(name="gen_ai.client.operation.duration", unit="s")
        duration.histogram.aggregation_temporality = CUMULATIVE
        usage = scope.metrics.add(name="gen_ai.client.token.usage", unit="{token}")
        usage.histogram.aggregation_temporality = CUMULATIVE
        points = 0
        for key, (counts, total, lo, hi) in self.streams.items():
            metric, bounds = (usage, TOKEN_BOUNDS) if key[0] == "tokens" else (duration, BOUNDS)
            dp = metric.histogram.data_points.add(start_time_unix_nano=start_ns, time_unix_nano=now_ns)
            dp.count, dp.sum, dp.min, dp.max = int(counts.sum()), total, lo, hi
            dp.bucket_counts.extend(counts.tolist())
            dp.explicit_bounds.extend(bounds)
            attrs = {"gen_ai.operation.name": "chat" if key[0] == "tokens" else key[0]}
            if key[0] in ("chat", "tokens"):
                attrs |= {"gen_ai.provider.name": key[1], "gen_ai.request.model": key[2]}
            if key[0] == "tokens":
                attrs["gen_ai.token.type"] = key[3]
            if key[0] == "execute_tool":
                attrs["gen_ai.tool.name"] = key[1]
            for k, v in attrs.items():
                dp.attributes.add(key=k).value.string_value = v
            points += 1
        memory = scope.metrics.add(name="process.memory.usage", unit="By")
        memory.gauge.data_points.add(time_unix_nano=now_ns, as_int=int(self.rng.integers(50, 90)) << 20)
        calls = scope.metrics.add(name="agent.calls", unit="{call}")
        calls.sum.is_monotonic, calls.sum.aggregation_temporality = True, CUMULATIVE
        calls.sum.data_points.add(start_time_unix_nano=start_ns, time_unix_nano=now_ns, as_int=self.calls)
        return points + 2


def otlp_bodies(fleet: list[Agent], per_request: int, start_ns: int, now_ns: int) -> tuple[list[bytes], int]:
    bodies, points = [], 0
    for i in range(0, len(fleet), per_request):
        request = ExportMetricsServiceRequest()
        for agent in fleet[i : i + per_request]:
            points += agent.export(request.resource_metrics.add(), start_ns, now_ns)
        bodies.append(gzip.compress(request.SerializeToString(), 1))
    return bodies, points


async def post_all(url: str, token: str, bodies: list[bytes], connections: int, kind: str) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": kind, "Content-Encoding": "gzip"}
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=connections)) as client:

        async def sender() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                while True:
                    r = await client.post(url, content=body, headers=headers)
                    if r.status_code in (200, 202):
                        break
                    if r.status_code not in (429, 503):
                        raise SystemExit(f"{url} answered {r.status_code}: {r.content[:300]!r}")
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))

        await asyncio.gather(*(sender() for _ in range(connections)))


def committed() -> int:
    from perfdash.ingest.models import IngestedBatch

    return IngestedBatch.objects.count()


def pending() -> int:
    from perfdash.ingest.models import PendingBatch

    return PendingBatch.objects.count()


def reset() -> None:
    from django.db import connection

    common.reset_store()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE otlp_stream, otlp_streamstate, ingest_pendingbatch")


def main() -> None:
    args = parse_args()
    common.setup_django(OTLP_DB)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from perfdash.api.models import ApiToken
    from perfdash.run import web_server, worker_command

    token = ApiToken.issue("bench", ["ingest"])[1]
    reset()
    now = time.time()
    rng = np.random.default_rng(1)
    fleet = [Agent(i, args.nodes, rng) for i in range(args.agents)]
    start_ns = int((now - 3600) * 1e9)
    print(
        f"encoding {args.intervals} export intervals of {args.agents} agents, "
        f"{args.agents_per_request} a request…"
    )
    intervals, otlp_points, recorded = [], 0, 0
    for k in range(args.intervals):
        recorded += sum(a.interval(args.values) for a in fleet)
        bodies, n = otlp_bodies(fleet, args.agents_per_request, start_ns, int((now - 60 + k) * 1e9))
        intervals.append(bodies)
        otlp_points += n
    n_v1 = args.v1_points // 10_000
    v1_bodies = [
        gzip.compress(common.encode(common.fleet_points(10_000, args.agents, args.nodes, now, seed)), 1)
        for seed in range(n_v1)
    ]

    if args.breakdown:
        breakdown(token, intervals, otlp_points, v1_bodies, now, start_ns, fleet, args)
        return

    web = common.spawn(
        [*web_server(str(args.port)), "--workers", str(args.web_workers), "--log-level", "warning"],
        f"/tmp/bench-otlp-web-{args.port}.log",
        OTLP_DB,
    )
    worker = common.spawn(
        worker_command("ingest", args.worker_concurrency), "/tmp/bench-otlp-worker.log", OTLP_DB
    )
    base = f"http://127.0.0.1:{args.port}"
    results = {}
    try:
        common.wait_for(lambda: _up(base), 30, "the web server")
        time.sleep(2)
        # Warm-up: series and rollup keys are created once per fleet, not per run, and each
        # worker process caches their ids once (a batch goes to either): several rounds, so
        # that each has seen nearly every series, as in a worker that has run for a while.
        for k in range(args.warm_up):
            v1_warm = v1_bodies[: 2 * args.nodes]
            asyncio.run(post_all(f"{base}/api/v1/ingest", token, v1_warm, 4, "application/json"))
            at = int((now - 120 + k) * 1e9)
            warm, _ = otlp_bodies(fleet, args.agents_per_request, start_ns - 10**9, at)
            asyncio.run(post_all(f"{base}/v1/metrics", token, warm, 4, "application/x-protobuf"))
        common.wait_for(lambda: pending() == 0, 300, "warm-up batches")

        for name, url, runs, kind in [
            ("v1", f"{base}/api/v1/ingest", [v1_bodies], "application/json"),
            ("otlp", f"{base}/v1/metrics", intervals, "application/x-protobuf"),
        ]:
            reset()
            groups = {"web": [web.pid], "worker": [worker.pid], "postgres": [], "redis": []}
            cpu_before = common.cpu_seconds(groups)
            started = time.perf_counter()
            for bodies in runs:  # one export interval after the other, as exporters send them
                asyncio.run(post_all(url, token, bodies, args.connections, kind))
            want = sum(len(b) for b in runs)
            common.wait_for(lambda w=want: committed() >= w and pending() == 0, 900, f"{name} to commit")
            elapsed = time.perf_counter() - started
            cpu_after = common.cpu_seconds(groups)
            results[name] = (elapsed, {g: cpu_after[g] - cpu_before[g] for g in cpu_after})

        paced = paced_run(args, fleet, base, token, start_ns) if args.paced_s else None
    finally:
        common.stop(web, worker)

    v1_s, v1_cpu = results["v1"]
    otlp_s, otlp_cpu = results["otlp"]
    v1_rate = n_v1 * 10_000 / v1_s
    otlp_rate = otlp_points / otlp_s
    print(f"ingest API v1: {n_v1 * 10_000:,} points in {n_v1} batches: {v1_rate:>10,.0f} points/s")
    print(
        f"OTLP: {otlp_points:,} data points ({recorded:,} recorded values) in "
        f"{sum(len(b) for b in intervals)} requests of {args.agents_per_request} agents: "
        f"{otlp_rate:>10,.0f} data points/s, {recorded / otlp_s:,.0f} recorded values/s"
    )
    print(f"ratio OTLP / v1 in points per second: {otlp_rate / v1_rate:.2f} (target >= 0.5)")
    print("CPU µs per (data) point, by process group (postgres: all its processes on the machine): v1 / OTLP")
    for g in v1_cpu:
        print(f"  {g:<10} {v1_cpu[g] / (n_v1 * 10_000) * 1e6:8.2f} / {otlp_cpu[g] / otlp_points * 1e6:8.2f}")
    if paced:
        print(
            f"paced, {args.agents} agents exporting every 10 s for {args.paced_s:g} s: "
            f"{paced['points']:,} data points, outbox at most {paced['max_pending']} batches, "
            f"all committed {paced['lag']:.2f} s after the last export"
        )


def breakdown(token, intervals, otlp_points, v1_bodies, now, start_ns, fleet, args) -> None:
    """Each path's stages in this process, one after the other, on one database connection:
    CPU per (data) point of each stage here, and of the PostgreSQL backend serving it."""
    import psutil
    from django.db import connection

    from perfdash.api.models import ApiToken
    from perfdash.api.views import _limits
    from perfdash.ingest import cardinality
    from perfdash.ingest.models import IngestedBatch, PendingBatch
    from perfdash.ingest.validate import parse_batch
    from perfdash.metrics.dimensions import dimension_tags
    from perfdash.otlp import assemble, models, receive, wire
    from perfdash.otlp.translate import Translator

    token_id = ApiToken.authenticate(token, "ingest").id
    limits = _limits()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cur.fetchone()[0])
    stages: dict[str, list[float]] = {}  # stage -> [CPU here, CPU of the backend]

    def timed(stage: str, f, *a):
        cpu, pg = time.process_time(), sum(backend.cpu_times()[:2])
        out = f(*a)
        spent = stages.setdefault(stage, [0.0, 0.0])
        spent[0] += time.process_time() - cpu
        spent[1] += sum(backend.cpu_times()[:2]) - pg
        return out

    def store(batch):
        pending = timed("outbox", PendingBatch.keep, token_id, batch)
        _, kept, _ = timed("outbox", PendingBatch.load, pending)
        timed("worker: store", IngestedBatch.store, token_id, kept, now, pending)

    def v1(body):
        batch = timed("parse", parse_batch, gzip.decompress(body), limits, now)
        timed("cardinality", cardinality.check, token_id, batch, now)
        store(batch)

    def otlp(body):
        raw = gzip.decompress(body)
        translator = Translator(token_id, receive.identity(), limits, dimension_tags(), now)
        points = timed("decode + translate", lambda: translator.request(wire.decode(raw, wire.PROTOBUF)))
        timed(
            "cardinality", receive._check_limits, token_id, receive.batch_id(raw, wire.PROTOBUF), points, now
        )
        with transaction.atomic():
            added = timed("stream state", models.added, points, now)
            batch = timed("assemble", assemble.batch, receive.batch_id(raw, wire.PROTOBUF), points, added)
        store(batch)

    from unittest import mock

    from django.db import transaction

    warm, _ = otlp_bodies(fleet, args.agents_per_request, start_ns - 10**9, int((now - 120) * 1e9))
    with mock.patch("perfdash.ingest.ratelimit.allow", return_value=True):
        for body in warm + v1_bodies[: 2 * args.nodes]:  # series created, ids cached
            (otlp if body in warm else v1)(body)
        for name, run, bodies, n in [
            ("ingest API v1", v1, v1_bodies, len(v1_bodies) * 10_000),
            ("OTLP", otlp, [b for i in intervals for b in i], otlp_points),
        ]:
            reset()
            stages.clear()
            for body in bodies:
                run(body)
            total = sum(sum(v) for v in stages.values())
            print(f"{name}: {total / n * 1e6:.2f} µs CPU per (data) point; by stage, here + PostgreSQL:")
            for k, (here, pg) in stages.items():
                print(f"  {k:<20} {here / n * 1e6:6.2f} + {pg / n * 1e6:6.2f}")


def paced_run(args, fleet: list[Agent], base: str, token: str, start_ns: int) -> dict:
    """Every agent exports once every 10 s (spread over the 10 s, `--agents-per-request` to a
    request) for `--paced-s`: does the outbox stay empty?"""
    reset()
    ticks = int(args.paced_s // 10)
    per_tick = max(1, args.agents // args.agents_per_request)
    max_pending, points, sent = 0, 0, 0
    started = time.time()
    for t in range(ticks):
        for a in fleet:
            a.interval(args.values)
        bodies, n = otlp_bodies(fleet, args.agents_per_request, start_ns, int(time.time() * 1e9))
        points += n
        for i, body in enumerate(bodies):
            due = started + t * 10 + i * 10 / per_tick
            time.sleep(max(0.0, due - time.time()))
            asyncio.run(post_all(f"{base}/v1/metrics", token, [body], 1, "application/x-protobuf"))
            sent += 1
            max_pending = max(max_pending, pending())
    last = time.perf_counter()
    common.wait_for(lambda: committed() >= sent and pending() == 0, 120, "the paced exports")
    return {"points": points, "max_pending": max_pending, "lag": time.perf_counter() - last}


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/metrics", timeout=1).status_code in (401, 405, 415)
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    main()
