"""Alert evaluation: 1000 rules over 1000 agents, against the query benchmark's store.

Creates 1000 enabled rules over the last 24 h (per-agent memory and latency rules with spread thresholds, plus
per-node and fleet rules; about a fifth of agent rules breach), then times full evaluation
passes (`engine.evaluate()`: one transaction, all rules). The first pass records the firing
transitions; later passes are the steady state. Target: <= 2 s per pass on this machine.

    .venv/bin/python bench/alerts.py        # run bench/query.py first (it loads the store)
"""

from __future__ import annotations

import time

import common

RULES = 1000
WINDOW = 86400  # the store was loaded once; a day-long window keeps it in view


def make_rules() -> None:
    """Rules on five metrics at agent, node and fleet scope; each threshold sits at a random
    quantile between the 95th and the 100th of its metric's per-subject values, so about
    2.5 % of subjects breach: a bad day, not a quiet one."""
    import numpy as np

    from perfdash.alerts.models import AlertEvent, AlertRule, AlertState
    from perfdash.metrics import query

    AlertEvent.objects.all().delete()
    AlertState.objects.all().delete()
    AlertRule.objects.all().delete()
    kinds = [
        ("agent_memory_bytes", "max", "agent"),
        ("agent_response_ms", "p95", "agent"),
        ("tool_execution_ms", "p90", "agent"),
        ("memory_op_ms", "p99", "agent"),
        ("llm_call_ms", "p95", "node"),
        ("agent_response_ms", "p95", "fleet"),
    ]
    values = {}
    for metric, stat, scope in kinds:
        if scope == "fleet":
            values[(metric, stat, scope)] = np.array([query.stats(metric, WINDOW)[stat]])
        else:
            rows = query.breakdown(metric, WINDOW, scope)
            values[(metric, stat, scope)] = np.array([v[stat] for v in rows.values()])
    rng = np.random.default_rng(1)
    rules = []
    for i in range(RULES):
        metric, stat, scope = kinds[i % len(kinds)]
        threshold = float(np.quantile(values[(metric, stat, scope)], rng.uniform(0.95, 1.0)))
        rules.append(
            AlertRule(
                name=f"bench {i}",
                metric=metric,
                statistic=stat,
                scope=scope,
                comparison="gt",
                threshold=threshold,
                window_seconds=WINDOW,
                min_samples=1,
            )
        )
    AlertRule.objects.bulk_create(rules)


def main() -> None:
    common.setup_django(common.QUERY_BENCH_DB)
    from perfdash.alerts import engine
    from perfdash.alerts.models import AlertEvent, AlertState

    make_rules()
    timings = []
    for run in range(4):
        started = time.perf_counter()
        notify = engine.evaluate()
        timings.append(time.perf_counter() - started)
        print(
            f"pass {run + 1}: {timings[-1]:.2f} s, {len(notify)} events to notify, "
            f"{AlertState.objects.exclude(state='inactive').count()} subjects firing or pending"
        )
    print(
        f"{RULES} rules over 1000 agents: first pass {timings[0]:.2f} s, steady state "
        f"{min(timings[1:]):.2f}-{max(timings[1:]):.2f} s (target <= 2 s); "
        f"{AlertEvent.objects.count()} events recorded"
    )


if __name__ == "__main__":
    main()
