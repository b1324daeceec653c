"""End-to-end ingest throughput: HTTP -> API -> Celery -> committed rows and rollups.

Starts uvicorn and a Celery worker on a benchmark database, posts a fixed number of
gzip-compressed 10,000-point batches from 1000 agents as fast as the server takes them, and
waits until every batch is committed. In the same run it COPYs the same rows into the same
raw table with nothing else in the way, and prints the ratio of the two.

    .venv/bin/python bench/ingest.py --points 2000000
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import time

import common
import httpx


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--worker-concurrency", type=int, default=2)
    ap.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--port", type=int, default=8123)
    return ap.parse_args()


def committed_batches() -> int:
    from perfdash.ingest.models import IngestedBatch

    return IngestedBatch.objects.count()


async def post_all(url: str, token: str, bodies: list[bytes], connections: int) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=connections)) as client:

        async def sender() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                while True:
                    r = await client.post(url, content=body, headers=headers)
                    if r.status_code == 202:
                        break
                    if r.status_code not in (429, 503):
                        raise SystemExit(f"ingest answered {r.status_code}: {r.text}")
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))

        await asyncio.gather(*(sender() for _ in range(connections)))


def raw_copy_rate(bodies: list[bytes], now: float) -> tuple[float, float]:
    """Points/s of plain binary COPY of the very rows the pipeline stores, into the same
    tables, one transaction per batch: (raw points only, raw points + rollup deltas)."""
    from django.db import connection, transaction

    from perfdash.ingest.validate import Limits, parse_batch
    from perfdash.metrics import store

    limits = Limits(100_000, 16, 128, 1 << 30, 600, 90 * 86400)
    streams, points = [], 0
    for b in bodies:
        batch = parse_batch(gzip.decompress(b), limits, now)
        streams.append(store.copy_data(batch, *store.resolve(batch.series), now))
        points += len(batch)
    rates = []
    for with_deltas in (False, True):
        common.reset_store()
        started = time.perf_counter()
        for raw, deltas in streams:
            with transaction.atomic(), connection.cursor() as cur:
                with cur.copy(store.RAW_COPY) as cp:
                    cp.write(raw)
                if with_deltas:
                    with cur.copy(store.DELTA_COPY) as cp:
                        cp.write(deltas)
        rates.append(points / (time.perf_counter() - started))
    return rates[0], rates[1]


def main() -> None:
    args = parse_args()
    common.setup_django()
    from perfdash.api.models import ApiToken

    token = ApiToken.issue("bench", ["ingest"])[1]
    common.reset_store()
    now = time.time()
    n_batches = args.points // args.batch
    print(
        f"encoding {n_batches} batches of {args.batch} points "
        f"from {args.agents} agents on {args.nodes} nodes…"
    )
    bodies = [
        gzip.compress(common.encode(common.fleet_points(args.batch, args.agents, args.nodes, now, seed)), 1)
        for seed in range(n_batches)
    ]

    web = common.spawn_web(args.port, args.web_workers)
    worker = common.spawn_worker("ingest", args.worker_concurrency, args.pool)
    try:
        url = f"http://127.0.0.1:{args.port}/api/v1/ingest"
        common.wait_for(lambda: _up(url), 30, "the web server")
        time.sleep(2)  # let the worker finish starting
        # Warm-up: series and rollup keys get created once per fleet, not per run.
        asyncio.run(post_all(url, token, bodies[: args.nodes], args.connections))
        common.wait_for(lambda: committed_batches() >= args.nodes, 120, "warm-up batches")
        common.reset_store()

        groups = {"web": [web.pid], "worker": [worker.pid], "postgres": [], "redis": [], "bench client": []}
        cpu_before = common.cpu_seconds(groups)
        started = time.perf_counter()
        asyncio.run(post_all(url, token, bodies, args.connections))
        accepted_s = time.perf_counter() - started
        common.wait_for(lambda: committed_batches() >= n_batches, 600, "all batches to commit")
        e2e_s = time.perf_counter() - started
        cpu_after = common.cpu_seconds(groups)
    finally:
        common.stop(web, worker)

    points = n_batches * args.batch
    e2e = points / e2e_s
    copy_raw, copy_all = raw_copy_rate(bodies, now)
    print(
        f"points: {points:,} in {n_batches} batches; web workers {args.web_workers}, "
        f"worker concurrency {args.worker_concurrency}"
    )
    print(f"accepted (202) rate:     {points / accepted_s:>12,.0f} points/s")
    print(f"end-to-end (committed):  {e2e:>12,.0f} points/s")
    print(
        f"COPY of the raw rows alone:                {copy_raw:>10,.0f} points/s  ratio {e2e / copy_raw:.2f}"
    )
    print(
        f"COPY of the same rows into the same tables: {copy_all:>9,.0f} points/s  ratio {e2e / copy_all:.2f}"
        "  (raw points + rollup deltas; target ratio >= 0.25)"
    )
    print("CPU per point, by process group (µs; 2 cores give 20 µs per point at 100k points/s):")
    for name in cpu_before:
        print(f"  {name:<14} {(cpu_after[name] - cpu_before[name]) / points * 1e6:6.2f}")


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code in (401, 405)
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    main()
