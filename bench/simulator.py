"""Fleet simulator throughput: generating, building and encoding points, in-process.

Generates what `python -m collectors simulate` generates for 1000 agents on 4 nodes (live
traffic in 1 s windows, then a backfill at one tick per minute, sampled), as v1 point dicts
in batches of at most 10,000 points, each encoded into a gzip-compressed body. The baseline,
in the same run: encoding alone (orjson.dumps + gzip -1) of the very same pre-built dicts,
the cost any sender pays whatever made the points. Nothing is sent.

    .venv/bin/python bench/simulator.py

Target: >= 200,000 points/s for generation + encoding, so the simulator is never the
bottleneck of bench/ingest.py (which reaches ~215,000 points/s end to end).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from dataclasses import dataclass

import common
import orjson

TARGET = 200_000


@dataclass
class Timing:
    points: int = 0
    generate: float = 0.0  # numpy: the fleet's columns
    build: float = 0.0  # the v1 point dicts, per node
    encode: float = 0.0  # batch bodies: orjson + gzip
    baseline: float = 0.0  # orjson + gzip of the same dicts, again

    def simulator(self) -> float:
        return self.generate + self.build + self.encode

    def per_point_us(self, seconds: float) -> float:
        return seconds / self.points * 1e6


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--live-seconds", type=int, default=120, help="simulated seconds of live traffic")
    ap.add_argument("--backfill-hours", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    return ap.parse_args()


def measure(sim, fleet, windows: list) -> Timing:
    from collectors.transport import encode_dicts  # as every collector encodes its batches

    timing = Timing()
    for w in windows:
        a = time.perf_counter()
        groups = fleet.groups(*w)
        b = time.perf_counter()
        per_node = fleet.node_points(groups)
        c = time.perf_counter()
        batches = [
            p[i : i + sim.MAX_BATCH_POINTS] for p in per_node for i in range(0, len(p), sim.MAX_BATCH_POINTS)
        ]
        for points in batches:
            encode_dicts(points)
        d = time.perf_counter()
        for points in batches:
            gzip.compress(orjson.dumps({"batch_id": "b", "points": points}), compresslevel=1)
        e = time.perf_counter()
        timing.points += sum(len(p) for p in batches)
        timing.generate += b - a
        timing.build += c - b
        timing.encode += d - c
        timing.baseline += e - d
    return timing


HEADER = "run      points  simulator points/s  generate  dicts  encode µs/point  baseline points/s  ratio"


def row(run: int, t: Timing) -> str:
    rate, baseline = t.points / t.simulator(), t.points / t.baseline
    us = [t.per_point_us(s) for s in (t.generate, t.build, t.encode)]
    return (
        f"{run:>3} {t.points:>11,} {rate:>19,.0f} {us[0]:>9.2f} {us[1]:>6.2f} {us[2]:>16.2f}"
        f" {baseline:>18,.0f} {rate / baseline:>6.2f}"
    )


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(common.ROOT))
    from collectors import simulate as sim

    now = float(int(time.time()))
    fleet = sim.Fleet(args.agents, args.nodes, seed=1, full_at=now)
    live = [sim.Window(t, t + 1) for t in range(int(now), int(now) + args.live_seconds)]
    backfill = list(sim.backfill_windows(fleet, now, args.backfill_hours * 3600, 60))
    print(
        f"{args.agents} agents on {args.nodes} nodes: {args.live_seconds} s live in 1 s windows,"
        f" {args.backfill_hours} h backfill at one tick per minute ({len(backfill)} windows)"
    )
    print(HEADER)
    slowest = float("inf")
    for run in range(1, args.runs + 1):
        timing = measure(sim, fleet, live + backfill)
        slowest = min(slowest, timing.points / timing.simulator())
        print(row(run, timing))
    verdict = "met" if slowest >= TARGET else "NOT met"
    print(
        f"target >= {TARGET:,} points/s (generate + encode): {verdict}, slowest run x{slowest / TARGET:.1f}"
    )


if __name__ == "__main__":
    main()
