"""Detection rules (issue 18 §5): what they catch, how soon, how often they cry wolf, and what
they cost.

Detection (`--part detection`): the fleet simulator's traffic (1000 agents on 10 nodes, its
daily cycle and growth) over 8 days of history and one evaluated day, written as ingest and
compaction write rollups (bench/compare.py's bulk path: the same grouping and COPY code),
requests sampled as the simulator's backfill is (about one per agent and minute) and memory
read every 10 s as the collectors read it, twice:

- with episodes: the history has the seed's random episodes, as a real fleet's history would;
  the evaluated day has 16 at known times (SCHEDULE): six slow tools (one per tool), six slow
  providers (each provider twice), two hours apart, and four memory leaks, one agent each;
- calm: the same fleet without any episode, history included (`simulate --episodes none`).

On each, every rule a fresh install has (the seeded threshold rules, the seeded SLOs' burn-rate
rules, the outlier rules on response p50 and on memory growth, the deploy and health rules) and
the rules a user adds to watch the episode metrics: anomaly rules (4 MADs) on the fleet's
response p95, on each tool's `tool_execution_ms` p95 and on each provider's `llm_call_ms` p95,
and an outlier rule on `agent_memory_bytes` max among each node's agents. The alert engine's
`evaluate(now=...)` steps over the evaluated day once a simulated minute, at the last second of
each minute: rollups are per minute, so that pass sees what a live pass sees then. Beat's 10 s
passes in between read the same whole minutes plus part of the running one, so they can decide
at most 50 s sooner: the delays here are at most that much late.

- Caught: a rule meant for the episode fires while it lasts: for a slow tool or provider, the
  response anomaly rule, that tool's or provider's anomaly rule, or a burn rule of an SLO on
  responses (or tool calls, for a tool); for a leak, a memory outlier rule on that agent.
  Target: all of them.
- Delay: from the episode's start to that alert. Target: p95 <= 5 min.
- False alarms: firing transitions on the calm day. Target: <= 1 a day for the rule set.

The two stores (perfdash_bench_detect, perfdash_bench_detect_calm) are kept for later runs
(`--reload` loads them again) and the two runs go in two processes (`--jobs 1`: one after
the other).

Cost (`--part cost`): over bench/compare.py's store (7 days of a 1000-agent fleet on 10
nodes, `agent_response_ms`, in perfdash_bench_compare; loaded there if missing), a pass of the
default threshold rules is the baseline; then the same pass with 100 detection rules (50
latency SLOs, fleet-wide and per node, each with its paging rule; 50 outlier rules on p50, p95
and p99 over 15 min and 1 h and on the growth over 5 min, peers per node and fleet-wide).
Prints each pass's median and p95 and the added time. Target: the detection rules add at most
1 s to a pass.

    .venv/bin/python bench/detect.py --part detection   # 3-16 min to load two stores, 6-10 min after
    .venv/bin/python bench/detect.py --part cost --repeat 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import common
import compare
import numpy as np
import orjson

from collectors import simulate as sim
from collectors.simulate.traffic import PROVIDERS, TOOLS, Group
from perfdash.lib.durations import DAY_S, HOUR_S

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
    ] + [("growth", 300, scope) for scope in ("node", "fleet")]
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


def cost(repeat: int) -> bool:
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
    base = passes(repeat, now)
    detection_rules()
    both = passes(repeat, now)
    clear()
    AlertRule.objects.filter(kind="burn").update(enabled=True)

    def line(name: str, s: list[float]) -> str:
        q = statistics.quantiles(s, n=20, method="inclusive")
        return f"{name:<58}{statistics.median(s):>8.3f}{q[18]:>8.3f}"

    print(f"\nevaluation passes over {compare.BIG_AGENTS} agents, seconds ({repeat} each)")
    print(f"{'pass':<58}{'median':>8}{'p95':>8}")
    print(line(f"baseline: the {baseline_rules} default rules", base))
    print(line(f"with {SLOS} SLO burn rules and {OUTLIER_RULES} outlier rules", both))
    added = statistics.median(both) - statistics.median(base)
    ratio = statistics.median(both) / statistics.median(base)
    print(
        f"\nadded by the detection rules: {added:.3f} s per pass ({ratio:.1f}x the baseline); "
        f"target <= {TARGET_S:g} s -> {'PASS' if added <= TARGET_S else 'FAIL'}"
    )
    return added <= TARGET_S


# --- detection: episodes caught, detection delay, false alarms --------------------------------

DETECT_DB = os.environ.get(
    "DETECT_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perfdash_bench_detect"
)
CALM_DB = os.environ.get(
    "DETECT_CALM_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/perfdash_bench_detect_calm"
)
AGENTS, NODES, SEED = 1000, 10, 3
# A baseline needs 7 days of the hour of the day it judges (anomaly.MIN_DAYS), of hours that
# ended an hour before: with 7 days of history the evaluated day's first hour would have 6.
HISTORY_DAYS = 8
END = 1_796_083_200  # 2026-12-01 00:00 UTC, fixed: every run stores the same points
DAY0 = END - DAY_S  # the evaluated day
MINUTE_S = 60
GAUGE_STEP_S = 10  # the SDK's and the agent collector's default between memory readings
# The metrics the rules read; the simulator's counters (errors, tokens, cache) feed none.
READ = (
    "agent_response_ms",
    "tool_execution_ms",
    "llm_call_ms",
    "memory_op_ms",
    "agent_memory_bytes",
    "active_agents",
)
# Minute rows from here on: the evaluated day's windows reach back 6 h (an SLO's 6 h burn
# window, read by the minute) and start mid-hour.
MINUTES_FROM = DAY0 - 7 * HOUR_S
TOLERANCE = 4.0  # MADs: the anomaly API's default and the charts' band
DELAY_TARGET_S = 300
FALSE_ALARMS_TARGET = 1.0  # per day, the whole rule set

# The evaluated day's episodes: (UTC hour, minute, kind, target, minutes). Slow tools and
# providers every two hours, so each episode's hour-long anomaly window is clear of the one
# before; leaks on four agents of different nodes, overlapping them.
SCHEDULE = (
    (0, 15, "slow_tool", "web_search", 30),
    (1, 0, "memory_leak", 1, 60),
    (2, 15, "slow_provider", "acme", 15),
    (4, 15, "slow_tool", "calculator", 45),
    (6, 15, "slow_provider", "globex", 30),
    (6, 30, "memory_leak", 4, 180),
    (8, 15, "slow_tool", "code_exec", 20),
    (10, 15, "slow_provider", "initech", 45),
    (12, 15, "slow_tool", "browser", 60),
    (13, 0, "memory_leak", 6, 120),
    (14, 15, "slow_provider", "acme", 45),
    (16, 15, "slow_tool", "file_read", 20),
    (18, 15, "slow_provider", "globex", 15),
    (19, 0, "memory_leak", 8, 90),
    (20, 15, "slow_tool", "sql_query", 40),
    (22, 15, "slow_provider", "initech", 30),
)


def known_episodes(fleet: sim.Fleet) -> list[sim.Episode]:
    """The schedule as episodes; a leak's target is the node whose longest-standing agent
    leaks (one in the fleet throughout the history)."""
    oldest = [int(a) for a in np.argsort(fleet.join_rank)]
    out = []
    for hour, minute, kind, target, minutes in SCHEDULE:
        start = DAY0 + hour * HOUR_S + minute * MINUTE_S
        if kind == "slow_tool":
            index = TOOLS.names("tool").index(target)
        elif kind == "slow_provider":
            index = PROVIDERS.index(target)
        else:
            index = next(a for a in oldest if fleet.node_of[a] == target)
            target = fleet.agent_names[index]
        out.append(sim.Episode(kind, start, start + minutes * MINUTE_S, target, index))
    return out


def fleet_of(episodes: bool) -> sim.Fleet:
    """The fleet of one run: with the seed's random episodes in the history and the schedule
    on the evaluated day, or with none at all."""
    if not episodes:
        return sim.Fleet(AGENTS, NODES, SEED, full_at=END, episodes=[])
    random = sim.Fleet(AGENTS, NODES, SEED, full_at=END)
    # The evaluated day starts an hour clear of the history's episodes.
    history = [e for e in random.episodes(DAY0 - HISTORY_DAYS * DAY_S, DAY0) if e.end <= DAY0 - HOUR_S]
    plain = sim.Fleet(AGENTS, NODES, SEED, full_at=END, episodes=[])
    return sim.Fleet(AGENTS, NODES, SEED, full_at=END, episodes=[*history, *known_episodes(plain)])


def series_of(fleet: sim.Fleet, g: Group) -> tuple[list[tuple], np.ndarray]:
    """The group's series (metric, node, agent, tags) and each point's index into them."""
    kinds = len(g.tags) if g.tags else 1
    tag = g.tag if g.tag is not None else np.zeros(len(g.ts), np.int64)
    combo = (g.node.astype(np.int64) * (fleet.agents + 1) + g.agent) * kinds + tag
    found, idx = np.unique(combo, return_inverse=True)
    labels = [*fleet.agent_names, sim.NODE_AGENT]
    series = []
    for c in found.tolist():
        rest, t = divmod(c, kinds)
        node, agent = divmod(rest, fleet.agents + 1)
        tags = orjson.dumps(g.tags[t], option=orjson.OPT_SORT_KEYS).decode() if g.tags else "{}"
        series.append((g.metric, fleet.node_names[node], labels[agent], tags))
    return series, idx.astype(np.int32)


def load(fleet: sim.Fleet, name: str) -> None:
    """History and evaluated day, an hour at a time: requests sampled as the simulator's
    backfill is, about one per agent and minute (a fifteenth of live traffic), and gauges read
    as the collectors read them (every GAUGE_STEP_S)."""
    sample = 1 / (sim.REQUESTS_PER_S * MINUTE_S)
    start = DAY0 - HISTORY_DAYS * DAY_S
    began, stored = time.perf_counter(), 0
    for t0 in range(start, END, HOUR_S):
        for g in fleet.groups(t0, t0 + HOUR_S, GAUGE_STEP_S, sample):
            if g.metric in READ:
                series, idx = series_of(fleet, g)
                compare.store_rollups(series, idx, g.ts, g.value, minutes_from=MINUTES_FROM)
                stored += len(g.ts)
        if (t0 - start) % DAY_S == DAY_S - HOUR_S:
            print(
                f"  {name}: {(t0 - start) // DAY_S + 1}/{HISTORY_DAYS + 1} days, {stored:,} points, "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )


def watch_rules() -> None:
    """What a user adds to watch the episode metrics, through the admin's validation."""
    from perfdash.alerts.models import AlertRule

    AlertRule.objects.filter(name__startswith="bench ").delete()
    rules = [
        dict(name="bench anomaly: response p95", metric="agent_response_ms"),
        *(
            dict(name=f"bench anomaly: {t} p95", metric="tool_execution_ms", tag_key="tool", tag_value=t)
            for t in TOOLS.names("tool")
        ),
        *(
            dict(name=f"bench anomaly: {p} p95", metric="llm_call_ms", tag_key="provider", tag_value=p)
            for p in PROVIDERS
        ),
    ]
    made = [AlertRule(kind="anomaly", statistic="p95", threshold=TOLERANCE, **r) for r in rules]
    made.append(
        AlertRule(
            name="bench outlier: agent memory max among its node's agents",
            kind="outlier",
            metric="agent_memory_bytes",
            statistic="max",
            scope="node",
            window_seconds=300,
            threshold=5,
            for_seconds=60,
            min_samples=3,
        )
    )
    for rule in made:
        rule.full_clean()
        rule.save()


@dataclass(frozen=True)
class Fired:
    """A firing transition."""

    rule: str
    kind: str
    metric: str  # the rule's metric (a burn rule's: its SLO's)
    tag_value: str
    subject: str
    at: float


@dataclass
class Run:
    name: str
    episodes: list[sim.Episode]  # from 6 h before the evaluated day on
    fired: list[Fired]
    seconds: list[float]  # each evaluation pass's
    rules: dict[str, str]  # name -> kind, every rule evaluated
    leaked: dict[tuple[str, float], float]  # (agent, at) -> bytes over its peers' median, at alerts


def evaluate_day(name: str) -> tuple[list[Fired], list[float]]:
    """Every rule once a simulated minute over the evaluated day, from no state: the firing
    transitions, and each pass's seconds."""
    from perfdash.alerts import engine
    from perfdash.alerts.models import AlertEvent, AlertState

    AlertEvent.objects.all().delete()
    AlertState.objects.all().delete()
    seconds = []
    began = time.perf_counter()
    for k in range(DAY_S // MINUTE_S):
        now = DAY0 + k * MINUTE_S + MINUTE_S - 1  # the last second of the minute
        t = time.perf_counter()
        engine.evaluate(now=now)
        seconds.append(time.perf_counter() - t)
        if k % 180 == 179:
            print(
                f"  {name}: {(k + 1) // 60:>2} h of the day evaluated, {time.perf_counter() - began:.0f} s",
                flush=True,
            )
    fired = AlertEvent.objects.filter(to_state="firing").select_related("rule", "rule__slo")
    return [
        Fired(
            e.rule.name,
            e.rule.kind,
            e.rule.slo.metric if e.rule.slo_id else e.rule.metric,
            e.rule.tag_value,
            e.subject,
            e.at.timestamp(),
        )
        for e in fired.order_by("at", "id")
    ], seconds


def one_run(name: str, url: str, episodes: bool, reload: bool) -> Run:
    """Load the run's store if needed, then evaluate its day (in a process of its own: each
    run has its database)."""
    common.setup_django(url)
    from django.conf import settings

    from perfdash.alerts.models import AlertRule

    settings.MINUTE_ROLLUP_RETENTION_DAYS = 3  # as deployed
    fleet = fleet_of(episodes)
    if reload or compare.anchor("agent_response_ms") != END:
        compare.reset()
        print(f"  {name}: loading {HISTORY_DAYS + 1} days of {AGENTS} agents on {NODES} nodes…", flush=True)
        load(fleet, name)
        compare.analyze()
    watch_rules()
    fired, seconds = evaluate_day(name)
    rules = dict(AlertRule.objects.filter(enabled=True).values_list("name", "kind"))
    # From 6 h before the day: the history's last episodes are still in its longest windows.
    episodes = fleet.episodes(DAY0 - 6 * HOUR_S, END)
    return Run(name, episodes, fired, seconds, rules, leaked_at(fleet, episodes, fired))


def leaked_at(fleet: sim.Fleet, day: list[sim.Episode], fired: list[Fired]) -> dict:
    """How far above its node's median memory each leaking agent was when an alert on it
    fired, from the stored rollups."""
    from perfdash.detect import outliers

    out = {}
    for e in day:
        if e.kind != "memory_leak":
            continue
        for f in fired:
            if f.subject == e.target and e.start <= f.at <= e.end:
                node = fleet.node_names[fleet.node_of[e.index]]
                peers = outliers.peer_values("agent_memory_bytes", "max", 360, node, f.at)
                median = float(np.median([p.value for p in peers.values()]))
                out[(e.target, f.at)] = peers[e.target].value - median
    return out


def meant_for(f: Fired, e: sim.Episode) -> bool:
    """Whether the alert is one of those meant to catch the episode."""
    if e.kind == "memory_leak":
        return f.kind == "outlier" and f.metric == "agent_memory_bytes" and f.subject == e.target
    if f.kind == "burn":
        return f.metric == "agent_response_ms" or (e.kind == "slow_tool" and f.metric == "tool_execution_ms")
    if f.kind != "anomaly":
        return False
    own = "tool_execution_ms" if e.kind == "slow_tool" else "llm_call_ms"
    return (f.metric == "agent_response_ms" and not f.tag_value) or (
        f.metric == own and f.tag_value == e.target
    )


def first(fired: list[Fired], e: sim.Episode, which) -> Fired | None:
    """The first alert during the episode that `which` accepts."""
    return next((f for f in fired if e.start <= f.at <= e.end and which(f)), None)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def clock(t: float) -> str:
    return time.strftime("%H:%M", time.gmtime(t))


def report_episodes(run: Run) -> bool:
    """One line per episode of the evaluated day; whether every one was caught, and each kind's
    delay p95 within the target."""
    print("\nepisodes of the evaluated day, UTC, and the first alert meant for each")
    header = (
        f"{'start':<7}{'length':>8}  {'episode':<27}{'first alert meant for it':<44}{'delay':>9}"
        f"{'response anomaly':>18}"
    )
    print(header)
    print("-" * len(header))
    delays: dict[str, list[float]] = {"slow": [], "memory_leak": []}
    caught = {"slow": 0, "memory_leak": 0}
    total = {"slow": 0, "memory_leak": 0}
    for e in day(run):
        family = "memory_leak" if e.kind == "memory_leak" else "slow"
        total[family] += 1
        hit = first(run.fired, e, lambda f, e=e: meant_for(f, e))
        alone = first(run.fired, e, response_anomaly)
        rule = "missed" if hit is None else hit.rule.removeprefix("bench ")
        delay = "" if hit is None else minutes(hit.at - e.start)
        if hit is not None:
            caught[family] += 1
            delays[family].append(hit.at - e.start)
        if family == "slow":
            also = "missed" if alone is None else minutes(alone.at - e.start)
        else:
            leaked = None if hit is None else run.leaked.get((e.target, hit.at))
            also = "" if leaked is None else f"+{leaked / 1e6:.0f} MB"
        label = f"{e.kind.replace('_', ' ')} {e.target}"
        length = minutes(e.end - e.start)
        print(f"{clock(e.start):<7}{length:>8}  {label:<27}{rule[:43]:<44}{delay:>9}{also:>18}")
    print("(for a leak, the last column is how far above its node's median the agent was when caught)")
    ok = True
    for family, label in (("slow", "slow tools and providers"), ("memory_leak", "memory leaks")):
        d = np.array(delays[family])
        spread = (
            f"delay p50 {minutes(np.percentile(d, 50))}, p95 {minutes(np.percentile(d, 95))}, "
            f"max {minutes(d.max())}"
            if len(d)
            else "no delay"
        )
        print(f"{label}: caught {caught[family]} of {total[family]}; {spread}")
        ok &= caught[family] == total[family]
    leaks = [e for e in day(run) if e.kind == "memory_leak"]
    soonest = [first(run.fired, e, lambda f, e=e: f.subject == e.target) for e in leaks]
    print(
        "the first alert of any rule on a leaking agent: "
        + ", ".join(
            "none" if f is None else f"{minutes(f.at - e.start)} ({f.rule})"
            for e, f in zip(leaks, soonest, strict=True)
        )
    )
    slow = [e for e in day(run) if e.kind != "memory_leak"]
    alone = [f.at - e.start for e in slow if (f := first(run.fired, e, response_anomaly))]
    print(
        f"the response p95 anomaly rule alone: caught {len(alone)} of {len(slow)}"
        + (
            f"; delay p50 {minutes(np.percentile(alone, 50))}, p95 {minutes(np.percentile(alone, 95))}"
            if alone
            else ""
        )
    )
    print(f"caught, target all: {'PASS' if ok else 'FAIL'}")
    verdicts = []
    for family, label in (("slow", "slow tools and providers"), ("memory_leak", "memory leaks")):
        p95 = np.percentile(delays[family], 95) if delays[family] else np.inf
        ok &= p95 <= DELAY_TARGET_S
        verdicts.append(f"{label} {minutes(p95)} {'PASS' if p95 <= DELAY_TARGET_S else 'FAIL'}")
    everyone = np.percentile(delays["slow"] + delays["memory_leak"], 95)
    print(
        f"delay p95, target <= {minutes(DELAY_TARGET_S)}: "
        + "; ".join(verdicts)
        + f" (all: {minutes(everyone)})"
    )
    return ok


def day(run: Run) -> list[sim.Episode]:
    """The episodes of the evaluated day (the schedule)."""
    return [e for e in run.episodes if e.start >= DAY0]


def response_anomaly(f: Fired) -> bool:
    return f.kind == "anomaly" and f.metric == "agent_response_ms" and not f.tag_value


def seeded_threshold(name: str, kind: str) -> bool:
    """The threshold rules seeded from the performance targets (not the health rule)."""
    return kind == "threshold" and not name.startswith("perfdash:")


SLOWED = {
    "slow_tool": ("agent_response_ms", "tool_execution_ms"),
    "slow_provider": ("agent_response_ms", "llm_call_ms"),
}


def caused_by(f: Fired, e: sim.Episode) -> bool:
    """Whether the alert is about what the episode does: a fleet-wide alert on a metric it
    slows, while it lasts or in the hour after (hour-long windows still hold it; 6 h for a
    burn rule: the ticket's short window); an alert on the leaking agent while it leaks."""
    if e.kind == "memory_leak":
        return f.subject == e.target and e.start <= f.at <= e.end
    after = 6 * HOUR_S if f.kind == "burn" else HOUR_S
    return not f.subject and f.metric in SLOWED[e.kind] and e.start <= f.at <= e.end + after


def report_false_alarms(calm: Run, busy: Run) -> bool:
    """Firing transitions per rule on the calm day (the false alarms), and on the day with
    episodes those no episode explains (the history's last ones included)."""
    unexplained = [f for f in busy.fired if not any(caused_by(f, e) for e in busy.episodes)]
    print(
        "\nfiring transitions per rule: on the calm day (false alarms); on the day with episodes, "
        "those no episode explains"
    )
    header = f"{'rule':<66}{'kind':<11}{'calm':>6}{'episodes':>10}"
    print(header)
    print("-" * len(header))
    counts = {}
    for name, kind in sorted(calm.rules.items(), key=lambda r: (seeded_threshold(*r), r[1], r[0])):
        n = sum(f.rule == name for f in calm.fired)
        m = sum(f.rule == name for f in unexplained)
        counts[name] = n
        print(f"{name[:65]:<66}{kind:<11}{n:>6}{m:>10}")
    detectors = sum(n for name, n in counts.items() if not seeded_threshold(name, calm.rules[name]))
    thresholds = sum(n for name, n in counts.items() if seeded_threshold(name, calm.rules[name]))
    print(
        f"the detection rules (seeded SLO burn, outlier, deploy and health rules, and the "
        f"{sum(n.startswith('bench ') for n in counts)} added): {detectors} on the calm day, "
        f"target <= {FALSE_ALARMS_TARGET:g} "
        "per day: " + ("PASS" if detectors <= FALSE_ALARMS_TARGET else "FAIL")
    )
    print(f"the seeded threshold rules: {thresholds} on the calm day")
    return detectors <= FALSE_ALARMS_TARGET


def detection(reload: bool, jobs: int) -> bool:
    import multiprocessing

    began = time.perf_counter()
    print(
        f"detection: {AGENTS} agents on {NODES} nodes, {HISTORY_DAYS} days of history, the day from "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(DAY0))} UTC evaluated once a minute; "
        f"{jobs} process(es); load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        flush=True,
    )
    runs = [("episodes", DETECT_DB, True, reload), ("calm", CALM_DB, False, reload)]
    # A fresh process for each run: Django is set up once per process, for one database.
    with multiprocessing.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
        busy, calm = pool.starmap(one_run, runs)
    caught = report_episodes(busy)
    quiet = report_false_alarms(calm, busy)
    passes = np.array(busy.seconds + calm.seconds)
    print(
        f"\nan evaluation pass of these {len(calm.rules)} rules over {AGENTS} agents: median "
        f"{np.median(passes):.2f} s, p95 {np.percentile(passes, 95):.2f} s"
    )
    print(f"{time.perf_counter() - began:.0f} s in all")
    return caught and quiet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["cost", "detection", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=10, help="cost: timed passes of each kind (default 10)")
    ap.add_argument("--reload", action="store_true", help="detection: load its two stores again")
    ap.add_argument("--jobs", type=int, default=2, choices=[1, 2], help="detection: runs at once (default 2)")
    args = ap.parse_args()
    passed = True
    if args.part in ("detection", "both"):
        passed &= detection(args.reload, args.jobs)
    if args.part in ("cost", "both"):
        passed &= cost(args.repeat)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
