"""Read latency of the query module over a large store.

Loads 30 days of history for 1000 agents on 10 nodes (60 million points by default: raw
points plus the minute and hour rollups that ingest and compaction would have produced,
written directly with the same grouping and COPY code), then times `query.stats` and
`query.series` for 5m, 1h, 24h, 7d and 30d windows at fleet, node and agent scope, and
checks a few percentiles against exact ones computed from the raw points.

    .venv/bin/python bench/query.py            # loads once; later runs reuse the data
    .venv/bin/python bench/query.py --reload
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import common
import numpy as np

os.environ.setdefault("RAW_RETENTION_DAYS", "31")  # keep every loaded point raw, for exact checks
os.environ.setdefault("MINUTE_ROLLUP_RETENTION_DAYS", "3")

WINDOWS = {"5m": 300, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
METRICS = {  # metric -> (tag sets per agent, median, lognormal sigma)
    "agent_response_ms": ([{}], 900.0, 0.6),
    "tool_execution_ms": ([{"tool": t} for t in common.TOOLS], 400.0, 1.0),
    "llm_call_ms": ([{"provider": p, "model": m} for p, m in common.MODELS], 1500.0, 0.5),
    "memory_op_ms": ([{"op": "read"}, {"op": "write"}], 12.0, 0.8),
    "agent_memory_bytes": ([{}], 60e6, 0.3),
}
# --counters adds these (each point an increment), for boards that chart counters as rates.
COUNTERS = {
    "tokens_total": ([{"provider": p, "model": m} for p, m in common.MODELS], 800.0, 0.7),
    "errors_total": ([{"error": "timeout"}, {"error": "rate_limit"}], 1.0, 0.0),
    "cache_hits_total": ([{"tool": t} for t in common.TOOLS[:2]], 1.0, 0.0),
    "cache_misses_total": ([{"tool": t} for t in common.TOOLS[:2]], 1.0, 0.0),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=60_000_000)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--reload", action="store_true")
    ap.add_argument(
        "--counters",
        action="store_true",
        help="add tokens, errors and cache counters per agent (what bench/dashboard.py's board charts)",
    )
    return ap.parse_args()


def fleet_series(agents: int, nodes: int, counters: bool = False) -> tuple[list, np.ndarray, np.ndarray]:
    import orjson

    series, medians, sigmas = [], [], []
    metrics = {**METRICS, **COUNTERS} if counters else METRICS
    for a in range(agents):
        node = f"node-{a % nodes}"
        for metric, (tag_sets, median, sigma) in metrics.items():
            for tags in tag_sets:
                series.append(
                    (metric, node, f"agent-{a}", orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode())
                )
                medians.append(median * (1 + (a % 7) / 10))
                sigmas.append(sigma)
    return series, np.array(medians), np.array(sigmas)


def load(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime

    from django.db import connection, transaction

    from perfdash.metrics import copydata, partitions, store
    from perfdash.metrics.rollup import group_label, group_values

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE metrics_point, metrics_rollup_delta, metrics_rollup_minute, metrics_rollup_hour"
        )
    series, medians, sigmas = fleet_series(args.agents, args.nodes, args.counters)
    series_ids, level_keys = store.resolve(series)
    rng = np.random.default_rng(42)
    hours = args.days * 24
    end_hour = int(time.time()) // 3600 * 3600 + 3600
    minute_floor = time.time() - 3 * 86400
    # A daily cycle (busy afternoons) and 2 % growth per day.
    weights = np.array(
        [(1 + 0.6 * np.sin(2 * np.pi * ((h % 24) - 9) / 24)) * 1.02 ** (h / 24) for h in range(hours)]
    )
    per_hour = (weights / weights.sum() * args.points).astype(int)
    started = time.perf_counter()
    for h, n in enumerate(per_hour):
        t0 = end_hour - (hours - h) * 3600
        ts = t0 + np.sort(rng.uniform(0, 3600, n))
        ts = ts[ts < time.time()]
        idx = rng.integers(0, len(series), len(ts)).astype(np.int32)
        values = rng.lognormal(np.log(medians[idx]), sigmas[idx])
        keys = level_keys[idx]
        valid = keys >= 0
        point_of = np.nonzero(valid)[0]
        flat = keys[valid]
        day = datetime.fromtimestamp(t0, UTC).date()
        for table in ("metrics_point", "metrics_rollup_hour", "metrics_rollup_minute"):
            partitions.ensure(table, [day])
        with transaction.atomic(), connection.cursor() as cur:
            with cur.copy(store.RAW_COPY) as cp:
                cp.write(copydata.raw_points(ts, series_ids[idx], values))
            hourly = group_values(
                group_label(flat, (ts[point_of] // 3600).astype(np.int64)), values[point_of]
            )
            with cur.copy(
                f"COPY metrics_rollup_hour {copydata.ROLLUP_COLUMNS.format(period='hour')} "
                "FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.write(copydata.rollups(hourly, 3600))
            if t0 + 3600 > minute_floor:
                minutely = group_values(
                    group_label(flat, (ts[point_of] // 60).astype(np.int64)), values[point_of]
                )
                with cur.copy(
                    f"COPY metrics_rollup_minute {copydata.ROLLUP_COLUMNS.format(period='minute')} "
                    "FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.write(copydata.rollups(minutely, 60))
        if h % 48 == 47:
            print(
                f"  loaded {h + 1}/{hours} hours, {per_hour[: h + 1].sum():,} points, "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def stored_counts() -> dict[str, int]:
    from django.db import connection

    out = {}
    with connection.cursor() as cur:
        for table in ("metrics_point", "metrics_rollup_minute", "metrics_rollup_hour"):
            cur.execute(f"SELECT count(*) FROM {table}")
            out[table] = cur.fetchone()[0]
        cur.execute("SELECT count(DISTINCT agent) FROM metrics_series")
        out["agents"] = cur.fetchone()[0]
    return out


def timings(fn, repeat: int) -> tuple[float, float, float]:
    fn()  # warm: plans, caches
    ms = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[94], q[98]


def exact_check(metric: str, window_s: int, scope, where: str, params: list) -> tuple[float, dict, dict]:
    from django.db import connection

    from perfdash.metrics import query

    now = time.time()
    got = query.stats(metric, window_s, scope, now=now)
    start = (int(now) // 60 + 1) * 60 - window_s
    with connection.cursor() as cur:
        cur.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY p.value) "
            "FROM metrics_point p JOIN metrics_series s ON s.id = p.series_id "
            f"WHERE s.metric = %s AND p.ts >= to_timestamp(%s) AND {where}",
            [metric, start, *params],
        )
        want = dict(zip(["p50", "p90", "p95", "p99"], cur.fetchone()[0], strict=True))
    worst = max(abs(got[k] - want[k]) / want[k] for k in want)
    return worst, got, want


def main() -> None:
    args = parse_args()
    common.setup_django(common.QUERY_BENCH_DB)
    from perfdash.metrics import query

    counts = stored_counts()
    if args.reload or counts["metrics_point"] < args.points * 0.9:
        print(f"loading {args.points:,} points for {args.agents} agents over {args.days} days…", flush=True)
        load(args)
        counts = stored_counts()
    print("stored: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

    scopes = {
        "fleet": query.FLEET,
        "node": query.Scope(node="node-3"),
        "agent": query.Scope(agent="agent-417"),
    }
    metric = "tool_execution_ms"
    print(
        f"\nquery.stats('{metric}') and query.series(…, 60 steps, p95): milliseconds over {args.repeat} runs"
    )
    print(
        f"{'scope':<7}{'window':>7}  {'stats p50':>9} {'p95':>7} {'p99':>7}   "
        f"{'series p50':>10} {'p95':>7} {'p99':>7}"
    )
    worst = 0.0
    for name, scope in scopes.items():
        for label, seconds in WINDOWS.items():
            s = timings(lambda: query.stats(metric, seconds, scope), args.repeat)  # noqa: B023
            step = (
                max(60, seconds // 60 // 60 * 60)
                if seconds <= 3 * 86400
                else max(3600, seconds // 60 // 3600 * 3600)
            )
            r = timings(lambda: query.series(metric, seconds, step, "p95", scope), args.repeat)  # noqa: B023
            worst = max(worst, s[2], r[2])
            print(
                f"{name:<7}{label:>7}  {s[0]:9.1f} {s[1]:7.1f} {s[2]:7.1f}   "
                f"{r[0]:10.1f} {r[1]:7.1f} {r[2]:7.1f}"
            )
    print(f"slowest p99: {worst:.1f} ms (target <= 100 ms)")

    print("\naccuracy against exact percentile_cont over the raw points (worst of p50/p90/p95/p99):")
    checks = [
        ("fleet 1h", 3600, query.FLEET, "true", []),
        ("fleet 24h", 86400, query.FLEET, "true", []),
        ("node 7d", 7 * 86400, query.Scope(node="node-3"), "s.node = %s", ["node-3"]),
        ("agent 30d", 30 * 86400, query.Scope(agent="agent-417"), "s.agent = %s", ["agent-417"]),
        (
            "tool 24h",
            86400,
            query.Scope(tag_key="tool", tag_value="web_search"),
            "s.tags->>'tool' = %s",
            ["web_search"],
        ),
    ]
    for label, seconds, scope, where, params in checks:
        err, got, want = exact_check(metric, seconds, scope, where, params)
        print(
            f"  {label:<10} worst relative error {err * 100:.3f} %  "
            f"(p99 {got['p99']:.1f} vs exact {want['p99']:.1f})"
        )


if __name__ == "__main__":
    main()
