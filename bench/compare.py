"""Comparisons (issue 15 §3): wrong verdicts, power and the time of one compare call.

Traffic comes from the fleet simulator's model (collectors/simulate: a daily cycle that
triples the load between night and afternoon, slow-tool and slow-provider episodes that slow
every agent's responses by 60-80 % for 15-60 minutes), `agent_response_ms` only, plus what the
simulator lacks and real fleets have: each agent's own speed (a log-normal factor, sd 10 %).
Rollups are written as ingest and compaction would have written them (the same grouping and
COPY code), into a database of its own (perfdash_bench_compare), reused by later runs.

Errors and power: a fleet of 40 agents on 4 nodes over 200 hours; every comparison covers one
hour (a fresh hour each time, so the 200 are independent), through `compare_cohorts` as the
API calls it. Cohorts are re-drawn each hour:

- A/A, shared agents: each point is variant a or b at random.
- A/A, different agents: half the agents run version "1.2.0", the others "1.3.0".
- A/A, canary: 4 of the 40 agents run "1.3.0".
- A/A, before/after: one hour of the whole fleet against the next (100 disjoint pairs), split
  by whether an episode (slow tool or provider) falls in either hour.
- Power: the same A/B splits with b 10 % slower (every value x 1.10, so p95 +10 %), at the full
  rate and thinned to about 5000, 2500 and 1000 points per cohort.

Bars: wrong slower/faster verdicts (p95, the top-level verdict) <= 5 % (target <= 2 %);
a 10 % slower p95 with >= 1000 points per cohort found in >= 90 % of comparisons.

Time: a 1000-agent fleet on 10 nodes over 7 days (about one response per agent and minute:
10 M points; minute rows for the last 2 hours, hour rows throughout) with two variants (agent i
runs variant i mod 2, b 10 % slower, as `simulate --variants a,b --slowdown b=10%`) and a
canary version on 20 agents. One compare call over 1 h and over 7 d, p95 <= 200 ms (target
<= 100 ms).

    .venv/bin/python bench/compare.py              # loads the first time (~2.5 min), ~4 min in all
    .venv/bin/python bench/compare.py --part time  # or errors; --reload loads again
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import common
import numpy as np

# The errors part reads 1-hour windows from minute rows up to 9 days back.
os.environ.setdefault("MINUTE_ROLLUP_RETENTION_DAYS", "30")
sys.path.insert(0, str(common.ROOT))

from collectors import simulate as sim
from perfdash.lib.durations import DAY_S, HOUR_S

COMPARE_BENCH_DB = os.environ.get(
    "COMPARE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perfdash_bench_compare"
)
AGENT_SD = 0.10  # each agent's own speed: log-normal factor
SLOWER = 1.10

# --- errors and power -----------------------------------------------------------------------

HOURS = 200
SMALL_AGENTS, SMALL_NODES, CANARY = 40, 4, 4
SAMPLE = 0.5  # of the simulator's requests: ~18,000 responses an hour on average
THINNED = (5000, 2500, 1000)  # points per cohort of the thinned power metrics


@dataclass(frozen=True)
class Experiment:
    name: str
    metric: str
    tag: str  # the tag whose values a and b are the cohorts ("" for before/after)
    a: str = ""  # before/after: "calm" (no episode in either hour) or "episode"
    b: str = ""


def experiments() -> list[Experiment]:
    out = [
        Experiment("A/A, shared agents (variant a/b per point)", "aa_variant_ms", "variant", "a", "b"),
        Experiment("A/A, different agents (20 vs 20)", "aa_split_ms", "version", "1.2.0", "1.3.0"),
        Experiment(
            f"A/A, canary ({CANARY} vs {SMALL_AGENTS - CANARY} agents)",
            "aa_canary_ms",
            "version",
            "1.2.0",
            "1.3.0",
        ),
        Experiment("A/A, before/after, neither hour with an episode", "aa_variant_ms", "", "calm"),
        Experiment("A/A, before/after, an episode in either hour", "aa_variant_ms", "", "episode"),
    ]
    for size in ("", *map(str, THINNED)):
        label = f"~{size} points per cohort" if size else "full rate"
        suffix = f"_{size}" if size else ""
        out.append(
            Experiment(f"+10 %, shared agents, {label}", f"pw_variant{suffix}_ms", "variant", "a", "b")
        )
        out.append(
            Experiment(
                f"+10 %, different agents, {label}", f"pw_split{suffix}_ms", "version", "1.2.0", "1.3.0"
            )
        )
    return out


def tagged(metric: str, tag: str, values: list[str]) -> list[tuple]:
    """The series of a metric: one per (agent, tag value)."""
    import orjson

    return [
        (metric, f"node-{a * SMALL_NODES // SMALL_AGENTS}", f"agent-{a}", orjson.dumps({tag: v}).decode())
        for a in range(SMALL_AGENTS)
        for v in values
    ]


def load_small(end: int) -> None:
    """HOURS hours of the 40-agent fleet ending at `end`, one metric per experiment."""
    fleet = sim.Fleet(SMALL_AGENTS, SMALL_NODES, seed=1, full_at=end)
    speed = np.exp(np.random.default_rng(11).normal(0, AGENT_SD, SMALL_AGENTS))
    started, stored = time.perf_counter(), 0
    for h in range(HOURS):
        t0 = end - (HOURS - h) * HOUR_S
        g = next(g for g in fleet.groups(t0, t0 + HOUR_S, 60, SAMPLE) if g.metric == "agent_response_ms")
        rng = np.random.default_rng([7, h])
        agent, ts, value = g.agent, g.ts, g.value * speed[g.agent]
        variant = rng.integers(0, 2, len(ts))  # per point: shared agents
        split = (rng.permutation(SMALL_AGENTS) < SMALL_AGENTS // 2)[agent].astype(np.int64)
        canary = (rng.permutation(SMALL_AGENTS) < CANARY)[agent].astype(np.int64)
        columns = [
            ("aa_variant_ms", "variant", ("a", "b"), variant, value),
            ("aa_split_ms", "version", ("1.2.0", "1.3.0"), split, value),
            ("aa_canary_ms", "version", ("1.2.0", "1.3.0"), canary, value),
        ]
        for size in (None, *THINNED):
            keep = np.ones(len(ts), bool) if size is None else rng.random(len(ts)) < 2 * size / len(ts)
            suffix = f"_{size}" if size else ""
            for name, tag, values, b in (
                (f"pw_variant{suffix}_ms", "variant", ("a", "b"), variant),
                (f"pw_split{suffix}_ms", "version", ("1.2.0", "1.3.0"), split),
            ):
                columns.append(
                    (name, tag, values, np.where(keep, b, -1), value * np.where(b == 1, SLOWER, 1.0))
                )
        for metric, tag, values, b, v in columns:
            kept = b >= 0
            idx = (agent[kept] * 2 + b[kept]).astype(np.int32)
            store_rollups(
                tagged(metric, tag, list(values)), idx, ts[kept], np.round(v[kept], 2), minutes_from=0
            )
            stored += int(kept.sum())
        if h % 50 == 49:
            print(
                f"  {h + 1}/{HOURS} hours, {stored:,} points, {time.perf_counter() - started:.0f} s",
                flush=True,
            )


def store_rollups(
    series: list[tuple], idx: np.ndarray, ts: np.ndarray, values: np.ndarray, minutes_from: float
) -> None:
    """Hour rows of these points, and minute rows of those from `minutes_from` on, as ingest
    and compaction would have stored them."""
    from datetime import UTC, datetime

    from django.db import connection, transaction

    from perfdash.metrics import copydata, partitions, store
    from perfdash.metrics.rollup import group_label, group_values

    _, level_keys = store.resolve(series)
    keys = level_keys[idx]
    point_of, level = np.nonzero(keys >= 0)
    flat, at, v = keys[point_of, level], ts[point_of], values[point_of]
    days = sorted({datetime.fromtimestamp(int(d) * DAY_S, UTC).date() for d in np.unique(at // DAY_S)})
    for table in ("metrics_rollup_hour", "metrics_rollup_minute"):
        partitions.ensure(table, days)
    with transaction.atomic(), connection.cursor() as cur:
        for period, table, keep in (
            (HOUR_S, "metrics_rollup_hour", np.ones(len(at), bool)),
            (60, "metrics_rollup_minute", at >= minutes_from),
        ):
            if not keep.any():
                continue
            groups = group_values(group_label(flat[keep], (at[keep] // period).astype(np.int64)), v[keep])
            column = "hour" if period == HOUR_S else "minute"
            copy = f"COPY {table} {copydata.ROLLUP_COLUMNS.format(period=column)} FROM STDIN (FORMAT BINARY)"
            with cur.copy(copy) as cp:
                cp.write(copydata.rollups(groups, period))


@dataclass
class Tally:
    runs: int = 0
    slower: int = 0
    faster: int = 0
    insufficient: int = 0
    covered: int = 0  # intervals of the p95 difference containing the true difference
    points: list[int] | None = None
    ms: list[float] | None = None


def run_experiment(e: Experiment, end: int) -> Tally:
    from perfdash.compare.cohorts import Cohort, compare_cohorts
    from perfdash.compare.compare import Options
    from perfdash.metrics.scope import Scope

    truth = SLOWER - 1 if e.metric.startswith("pw_") else 0.0
    tally = Tally(points=[], ms=[])
    start = end - HOURS * HOUR_S
    if e.tag:
        pairs = [
            (
                Cohort(Scope(tag_key=e.tag, tag_value=e.a), t, t + HOUR_S),
                Cohort(Scope(tag_key=e.tag, tag_value=e.b), t, t + HOUR_S),
            )
            for t in range(start, end, HOUR_S)
        ]
    else:
        fleet = sim.Fleet(SMALL_AGENTS, SMALL_NODES, seed=1, full_at=end)
        pairs = [
            (Cohort(Scope(), t, t + HOUR_S), Cohort(Scope(), t + HOUR_S, t + 2 * HOUR_S))
            for t in range(start, end, 2 * HOUR_S)
            if (e.a == "episode") == any(ep.kind != "memory_leak" for ep in fleet.episodes(t, t + 2 * HOUR_S))
        ]
    for a, b in pairs:
        began = time.perf_counter()
        result = compare_cohorts(e.metric, a, b, Options(stats=("p95",)), now=end)
        tally.ms.append((time.perf_counter() - began) * 1000)
        tally.runs += 1
        tally.points.append(min(result.a_count, result.b_count))
        verdict = result.verdict
        tally.slower += verdict == "slower"
        tally.faster += verdict == "faster"
        tally.insufficient += verdict == "insufficient_data"
        d = result.diff["p95"]
        tally.covered += d.lo is not None and d.lo <= truth <= d.hi
    return tally


def errors() -> bool:
    end = anchor("aa_variant_ms")
    if end is None:
        end = int(time.time()) // HOUR_S * HOUR_S
        print(f"loading {HOURS} hours of a {SMALL_AGENTS}-agent fleet…", flush=True)
        load_small(end)
        analyze()
    print(
        f"\nerrors and power: {SMALL_AGENTS} agents on {SMALL_NODES} nodes, one hour per comparison, "
        f"data ending {time.strftime('%Y-%m-%d %H:%M', time.gmtime(end))} UTC; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    header = (
        f"{'comparison':<50}{'runs':>5}{'points/cohort':>14}{'slower':>8}{'faster':>8}{'insuff.':>8}"
        f"{'covers':>8}{'ms p50':>8}"
    )
    print(header)
    print("-" * len(header))
    wrong_rates, power = {}, {}
    for e in experiments():
        t = run_experiment(e, end)
        print(
            f"{e.name:<50}{t.runs:>5}{int(np.median(t.points)):>14,}{t.slower / t.runs:>8.1%}"
            f"{t.faster / t.runs:>8.1%}{t.insufficient / t.runs:>8.1%}{t.covered / t.runs:>8.1%}"
            f"{statistics.median(t.ms):>8.0f}",
            flush=True,
        )
        if e.metric.startswith("aa_") and e.tag:
            wrong_rates[e.name] = (t.slower + t.faster) / t.runs
        if e.metric.startswith("pw_"):
            power[e.name] = t.slower / t.runs
    print(
        "\nA/A: slower and faster are wrong verdicts; +10 %: slower is the power. covers: the 95 % "
        "interval of the p95 difference holds the true one (0, or +10 %)."
    )
    aa_ok = all(r <= 0.05 for r in wrong_rates.values())
    power_ok = all(r >= 0.90 for r in power.values())
    print(
        f"A/A wrong verdicts, bar <= 5 % (target <= 2 %): worst {max(wrong_rates.values()):.1%} -> "
        + ("PASS" if aa_ok else "FAIL")
    )
    short = [f"{name.split(', ', 1)[1]} {r:.0%}" for name, r in power.items() if r < 0.90]
    print(
        "power, bar >= 90 % with >= 1000 points per cohort: "
        + ("PASS" if power_ok else "FAIL (" + "; ".join(short) + ")")
    )
    return aa_ok and power_ok


# --- time -----------------------------------------------------------------------------------

BIG_AGENTS, BIG_NODES, BIG_DAYS, BIG_CANARY = 1000, 10, 7, 20
BIG_METRIC = "agent_response_ms"


def load_big(end: int) -> None:
    """BIG_DAYS days of the 1000-agent fleet ending at `end`: about one response per agent and
    minute (backfill sampling), variants a and b (b 10 % slower), a canary version."""
    import orjson

    fleet = sim.Fleet(BIG_AGENTS, BIG_NODES, seed=2, full_at=end, variants=("a", "b"), slowdown={"b": SLOWER})
    speed = np.exp(np.random.default_rng(12).normal(0, AGENT_SD, BIG_AGENTS))
    canary = np.zeros(BIG_AGENTS, np.int64)
    canary[np.random.default_rng(13).choice(BIG_AGENTS, BIG_CANARY, replace=False)] = 1
    series = [
        (
            BIG_METRIC,
            fleet.node_names[fleet.node_of[a]],
            fleet.agent_names[a],
            orjson.dumps(
                {"variant": "ab"[fleet.variant_of[a]], "version": ("1.2.0", "1.3.0")[canary[a]]},
                option=orjson.OPT_SORT_KEYS,
            ).decode(),
        )
        for a in range(BIG_AGENTS)
    ]
    sample = 1 / (sim.REQUESTS_PER_S * 60)
    started, stored = time.perf_counter(), 0
    for day in range(BIG_DAYS):
        t0 = end - (BIG_DAYS - day) * DAY_S
        for h in range(0, DAY_S, 6 * HOUR_S):
            g = next(
                g for g in fleet.groups(t0 + h, t0 + h + 6 * HOUR_S, 60, sample) if g.metric == BIG_METRIC
            )
            value = np.round(g.value * speed[g.agent], 2)
            store_rollups(series, g.agent.astype(np.int32), g.ts, value, minutes_from=end - 2 * HOUR_S)
            stored += len(g.ts)
        print(
            f"  {day + 1}/{BIG_DAYS} days, {stored:,} points, {time.perf_counter() - started:.0f} s",
            flush=True,
        )


def timings(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm: plans, caches, the key index
    ms = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - began) * 1000)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[94]


def speed(repeat: int) -> bool:
    from django.conf import settings

    from perfdash.compare.cohorts import Cohort, breakdown, compare_cohorts, plan
    from perfdash.compare.compare import Options
    from perfdash.metrics.scope import Scope

    end = anchor(BIG_METRIC)
    if end is None:
        end = int(time.time()) // HOUR_S * HOUR_S
        print(f"loading {BIG_DAYS} days of a {BIG_AGENTS}-agent fleet…", flush=True)
        load_big(end)
        analyze()
    settings.MINUTE_ROLLUP_RETENTION_DAYS = 3  # as deployed: 7 days are read by the hour
    now = end - 1  # the reads see the store as it was when loaded
    print(
        f"\ntime of one compare_cohorts() call, {BIG_AGENTS} agents on {BIG_NODES} nodes, ms over "
        f"{repeat} runs; load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    variant = {v: Scope(tag_key="variant", tag_value=v) for v in "ab"}
    version = {v: Scope(tag_key="version", tag_value=v) for v in ("1.2.0", "1.3.0")}
    cases = []
    for label, seconds in (("1 h", HOUR_S), ("7 d", BIG_DAYS * DAY_S)):
        start = end - seconds
        # Before/after: the hour before against the last one; the first half-week against the second.
        half = seconds // 2 if seconds > HOUR_S else seconds
        before, after = (end - 2 * half, end - half), (end - half, end)
        cases += [
            (
                f"{label}: variant a vs b (500 vs 500 agents)",
                Cohort(variant["a"], start, end),
                Cohort(variant["b"], start, end),
            ),
            (
                f"{label}: canary 1.3.0 vs 1.2.0 ({BIG_CANARY} vs {BIG_AGENTS - BIG_CANARY})",
                Cohort(version["1.2.0"], start, end),
                Cohort(version["1.3.0"], start, end),
            ),
            (f"{label}: before/after, whole fleet", Cohort(Scope(), *before), Cohort(Scope(), *after)),
        ]
    header = f"{'comparison':<52}{'blocks':>8}{'p50':>8}{'p95':>8}  verdict (p95 diff)"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for label, a, b in cases:
        how = plan(a, b, now)
        p50, p95 = timings(lambda a=a, b=b: compare_cohorts(BIG_METRIC, a, b, Options(), now=now), repeat)
        result = compare_cohorts(BIG_METRIC, a, b, Options(), now=now)
        d = result.diff["p95"]
        by_node = [n.split("'s")[0] for n in result.notes if "resampled by node" in n]
        worst = max(worst, p95)
        print(
            f"{label:<52}{how.slot_s // 60:>6}m {p50:>7.1f}{p95:>8.1f}  {result.verdict} "
            f"({d.rel:+.1%}, {d.lo:+.1%} to {d.hi:+.1%}); by node: {', '.join(by_node) or '-'}"
        )
    print(
        f"\nslowest p95: {worst:.1f} ms (bar <= 200 ms, target <= 100 ms) -> "
        + ("PASS" if worst <= 200 else "FAIL")
    )
    # The compare page's breakdown: one comparison per value, as many as there are values.
    before, after = Cohort(Scope(), end - 2 * HOUR_S, end - HOUR_S), Cohort(Scope(), end - HOUR_S, end)
    p50, p95 = timings(lambda: breakdown(BIG_METRIC, before, after, "variant", Options(), now), repeat // 3)
    print(f"breakdown by variant (2 values), 1 h before/after: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    return worst <= 200


# --- the store ------------------------------------------------------------------------------


def anchor(metric: str) -> int | None:
    """The end of the loaded data of `metric` (the hour after its last hour row)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM max(r.hour))::int8 FROM metrics_rollup_hour r "
            "JOIN metrics_rollupkey k ON k.id = r.key_id "
            "WHERE k.metric = %s AND k.node = '' AND k.tag_key = ''",
            [metric],
        )
        last = cur.fetchone()[0]
    return None if last is None else int(last) + HOUR_S


def reset() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE metrics_rollup_delta, metrics_rollup_minute, metrics_rollup_hour")


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["errors", "time", "both"], default="both")
    ap.add_argument("--reload", action="store_true", help="load the data again")
    ap.add_argument("--repeat", type=int, default=30, help="timed calls per case (default 30)")
    args = ap.parse_args()
    began = time.perf_counter()
    common.setup_django(COMPARE_BENCH_DB)
    if args.reload:
        reset()
    passed = True
    if args.part in ("errors", "both"):
        passed &= errors()
    if args.part in ("time", "both"):
        passed &= speed(args.repeat)
    print(f"\n{time.perf_counter() - began:.0f} s in all")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
