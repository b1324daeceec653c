"""Detection rules' cost (issue 18 §5, the evaluation row): 50 SLOs with their burn-rate rules
and 50 outlier rules over a 1000-agent fleet, added to an evaluation pass.

Uses the store of `bench/compare.py --part time` (7 days of a 1000-agent fleet on 10 nodes,
`agent_response_ms`, in perfdash_bench_compare; loaded there if missing). A pass of the
default threshold rules is the baseline; then the same pass with the 100 detection rules
(50 latency SLOs, fleet-wide and per node, each with its paging rule; 50 outlier rules on p50,
p95 and p99 over 15 min and 1 h, peers per node and fleet-wide). Prints each pass's median and
p95 and the added time, and the added time over the baseline's.

Target: the detection rules add at most 1 s to a pass.

    .venv/bin/python bench/detect.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import common
import compare

SLOS = 50
OUTLIER_RULES = 50
TARGET_S = 1.0


def passes(repeat: int, now: float) -> list[float]:
    from perfdash.alerts import engine

    engine.evaluate(now=now)  # the first pass records the transitions: not the steady state
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        engine.evaluate(now=now)
        seconds.append(time.perf_counter() - began)
    return seconds


def detection_rules() -> None:
    """50 SLOs (fleet-wide and per node, thresholds 1.5 to 3 s) with their paging rules, and
    50 outlier rules."""
    from perfdash.alerts.models import AlertRule
    from perfdash.detect.models import SLO

    nodes = [""] + [f"node-{i}" for i in range(10)]
    for i in range(SLOS):
        slo = SLO.objects.create(
            name=f"bench slo {i}",
            metric=compare.BIG_METRIC,
            threshold=1500 + 30 * i,
            objective=0.95,
            node=nodes[i % len(nodes)],
        )
        AlertRule.objects.create(
            name=f"bench burn {i}",
            kind="burn",
            slo=slo,
            metric=slo.metric,
            statistic="count",
            comparison="gte",
            threshold=1.0,
            severity="critical",
        )
    shapes = [
        (s, w, scope) for s in ("p50", "p95", "p99") for w in (900, 3600) for scope in ("node", "fleet")
    ]
    for i in range(OUTLIER_RULES):
        stat, window, scope = shapes[i % len(shapes)]
        AlertRule.objects.create(
            name=f"bench outlier {i}",
            kind="outlier",
            metric=compare.BIG_METRIC,
            statistic=stat,
            scope=scope,
            window_seconds=window,
            threshold=3 + i % 5,
            min_samples=10,
        )


def clear() -> None:
    from perfdash.alerts.models import AlertEvent, AlertRule, AlertState
    from perfdash.detect.models import SLO

    AlertEvent.objects.filter(rule__name__startswith="bench ").delete()
    AlertState.objects.filter(rule__name__startswith="bench ").delete()
    AlertRule.objects.filter(name__startswith="bench ").delete()
    SLO.objects.filter(name__startswith="bench ").delete()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10, help="timed passes of each kind (default 10)")
    args = ap.parse_args()
    common.setup_django(compare.COMPARE_BENCH_DB)
    from django.conf import settings

    from perfdash.alerts.models import AlertRule

    end = compare.anchor(compare.BIG_METRIC)
    if end is None:
        end = int(time.time()) // 3600 * 3600
        print(f"loading {compare.BIG_DAYS} days of a {compare.BIG_AGENTS}-agent fleet…", flush=True)
        compare.load_big(end)
        compare.analyze()
    settings.MINUTE_ROLLUP_RETENTION_DAYS = 3
    now = end - 1
    clear()
    baseline_rules = AlertRule.objects.filter(enabled=True).exclude(kind="burn").count()
    AlertRule.objects.filter(kind="burn").update(enabled=False)  # the seeded SLOs' rules
    base = passes(args.repeat, now)
    detection_rules()
    both = passes(args.repeat, now)
    clear()
    AlertRule.objects.filter(kind="burn").update(enabled=True)

    def line(name: str, s: list[float]) -> str:
        q = statistics.quantiles(s, n=20, method="inclusive")
        return f"{name:<58}{statistics.median(s):>8.3f}{q[18]:>8.3f}"

    print(f"\nevaluation passes over {compare.BIG_AGENTS} agents, seconds ({args.repeat} each)")
    print(f"{'pass':<58}{'median':>8}{'p95':>8}")
    print(line(f"baseline: the {baseline_rules} default rules", base))
    print(line(f"with {SLOS} SLO burn rules and {OUTLIER_RULES} outlier rules", both))
    added = statistics.median(both) - statistics.median(base)
    ratio = statistics.median(both) / statistics.median(base)
    print(
        f"\nadded by the detection rules: {added:.3f} s per pass ({ratio:.1f}x the baseline); "
        f"target <= {TARGET_S:g} s -> {'PASS' if added <= TARGET_S else 'FAIL'}"
    )
    sys.exit(0 if added <= TARGET_S else 1)


if __name__ == "__main__":
    main()
