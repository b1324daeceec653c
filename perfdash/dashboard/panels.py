"""What each dashboard page shows, as plain data built from the query module.

Views render it as JSON for the first paint; the live consumer sends the same data again
whenever new points have been committed (at most once per second per page).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from django.conf import settings

from perfdash.alerts.models import AlertState
from perfdash.alerts.quantities import measured, shown
from perfdash.dashboard import capacity_page, peaks
from perfdash.dashboard.peaks import AgentPeaks
from perfdash.detect import anomaly, outliers
from perfdash.events.models import Event
from perfdash.lib import units
from perfdash.metrics import keys, query
from perfdash.metrics.scope import Scope, UnknownMetric, check_text

PAGES = ("overview", "tools", "capacity")
WINDOWS = {"5m": 300, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# About 60 points per chart; steps under an hour only where minute rollups exist.
STEPS = {"5m": 60, "1h": 60, "24h": 1800, "7d": 3 * 3600, "30d": 12 * 3600}
LATENCY = [
    ("agent_response_ms", "Agent response time"),
    ("tool_execution_ms", "Tool execution time"),
    ("llm_call_ms", "LLM call time"),
    ("memory_op_ms", "Memory operation time"),
]
# Shown after the LLM call panels once a fleet sends it (OpenTelemetry's time to first token).
FIRST_TOKEN = ("llm_time_to_first_token_ms", "LLM time to first token")
MAX_GROWTH = 2.0  # what-if growth per week: -50 % to +200 %
# Event markers on a time chart at most, the newest: more would hide the lines they mark.
MAX_MARKERS = 50


@dataclass(frozen=True)
class View:
    """A page and its filters, as they appear in the URL."""

    page: str = "overview"
    window: str = "1h"
    node: str = ""
    agent: str = ""
    tool: str = ""
    model: str = ""
    growth: float = 0.0  # capacity page: extra growth per week (what-if), 0.05 = 5 %

    @classmethod
    def from_params(cls, params, **fixed: str) -> View:
        values = {
            k: (params.get(k) or "").strip()[:128] for k in ("window", "node", "agent", "tool", "model")
        }
        values["window"] = values["window"] if values["window"] in WINDOWS else "1h"
        for name in ("node", "agent", "tool", "model"):
            check_text(name, fixed.get(name, values[name]))
        try:
            growth = float(params.get("growth") or 0) / 100
        except ValueError:
            growth = 0.0
        values["growth"] = min(MAX_GROWTH, max(-MAX_GROWTH / 4, growth)) if math.isfinite(growth) else 0.0
        values.update(fixed)
        return cls(**values)

    @property
    def seconds(self) -> int:
        return WINDOWS[self.window]

    def scope(self, metric: str = "") -> Scope:
        """The scope for one metric: the tool filter narrows tool metrics, the model filter
        LLM metrics (calls and time to first token); other metrics see only node and agent."""
        tag_key, tag_value = "", ""
        if self.tool and metric == "tool_execution_ms":
            tag_key, tag_value = "tool", self.tool
        elif self.model and metric in ("llm_call_ms", "llm_time_to_first_token_ms"):
            tag_key, tag_value = "model", self.model
        return Scope(node=self.node, agent=self.agent, tag_key=tag_key, tag_value=tag_value)

    def key(self) -> tuple:
        return tuple(asdict(self).values())


def build(view: View, live: AgentPeaks | None = None) -> dict:
    """The page's data. `live`: memory per agent as this process keeps it (peaks.py) instead
    of read from the store."""
    now = time.time()
    if view.page == "capacity":
        data = capacity_page.build(view.growth, view.node, now)
        data["events"] = events(view, _history_start(data, now), now)
        return data
    with keys.pinned():  # one look for new rollup keys, not one per read
        if view.page == "tools":
            return tools(view)
        data = overview(view, live)
    data["events"] = events(view, now - view.seconds, now)
    return data


def events(view: View, start: float, end: float) -> list[dict]:
    """The events the page's time charts mark, newest first: those of its node or agent and
    the untagged ones (Event.between), with `ts` in Unix seconds as the charts' times are."""
    rows = Event.between(start, end, node=view.node, agent=view.agent, limit=MAX_MARKERS)
    return [{**row, "ts": row["ts"].timestamp()} for row in rows]


def _history_start(capacity: dict, now: float) -> float:
    """Where the capacity charts' history begins (their forecasts lie ahead, where no event is)."""
    starts = [c["history"]["t"][0] for t in capacity["targets"] for c in t["charts"] if c["history"]["t"]]
    return min(starts, default=now)


def overview(view: View, live: AgentPeaks | None = None) -> dict:
    # Slow-changing things first, and last the latency panels and headline counts (two reads of
    # the same window) and memory: what changes every second is read nearest the send.
    # An agent's page shows no nodes: it reads no active agents.
    active = None
    if not view.agent:
        active = query.top(  # newest per node
            "active_agents",
            120,
            "node",
            settings.BREAKDOWN_TOP_N,
            percentiles=False,
            rank="max",
            names=[view.node] if view.node else None,
        )
    data = {"view": asdict(view), "alerts": firing_alerts(view)}
    if not view.agent:
        data["nodes"] = nodes(active)
    else:
        data["memory_series"] = _series("agent_memory_bytes", view, ["max"])
        data["slowest"] = {
            "tools": slowest(view, "tool_execution_ms", "tool"),
            "models": slowest(view, "llm_call_ms", "model"),
        }
    scope = view.scope()
    panels = [*LATENCY]
    if query.known_metric(FIRST_TOKEN[0]):
        panels.insert(3, FIRST_TOKEN)
    shown = {metric: keys.ids(metric, view.scope(metric)) for metric, _ in panels}
    window = query.read_window(
        sorted({i for ids in shown.values() for i in ids}), view.seconds, STEPS[view.window]
    )
    data["latency"] = [
        latency(window, shown[metric], metric, title, view.scope(metric)) for metric, title in panels
    ]
    responses = data["latency"][0]["stats"]["count"]  # agent_response_ms, the first of LATENCY
    errors, every = keys.ids("errors_total", scope), keys.every_metric(scope)
    llm_ids = {m: keys.ids(m, scope) for m in LLM_COUNTERS}
    by_error = keys.members("errors_total", "error", scope)
    read = {*errors, *every, *(i for ids in llm_ids.values() for i in ids), *(k for k, _ in by_error)}
    totals = window.totals(sorted(read))
    error_count = sum(totals.get(key, (0, 0.0))[1] for key in errors)
    data["kpis"] = {
        "active_agents": _active_agents(view, active),
        "points_per_s": sum(totals.get(key, (0, 0.0))[0] for key in every) / window.elapsed,
        "errors_per_s": error_count / window.elapsed,
        "error_ratio": error_count / responses if responses else None,
        "responses": responses,
    }
    data["llm"] = llm(totals, llm_ids, by_error, window.elapsed)
    data["memory"] = memory(view, live)
    if not view.agent:
        data["outliers"] = outlier_rows(view.node)
    return data


LLM_COUNTERS = ("tokens_total", "cache_hits_total", "cache_misses_total")
# A ratio over fewer events (lookups, responses) than this, in a step or a row, has no value:
# one lookup gives a hit rate of 0 % or 100 %, which says nothing about the cache.
MIN_RATIO_EVENTS = 10
ERROR_TYPES_SHOWN = 3


def llm(totals: dict, ids: dict[str, list[int]], by_error: list[tuple[int, str]], elapsed: float) -> dict:
    """The overview's LLM row: tokens per second, the cache hit rate (none under
    MIN_RATIO_EVENTS lookups), and the most frequent error types per second (the `error` tag of
    errors_total), from counters' sums."""
    summed = {m: sum(totals.get(k, (0, 0.0))[1] for k in keys_of) for m, keys_of in ids.items()}
    lookups = summed["cache_hits_total"] + summed["cache_misses_total"]
    per_type: dict[str, float] = {}
    for key, error in by_error:
        per_type[error] = per_type.get(error, 0.0) + totals.get(key, (0, 0.0))[1]
    top = sorted((e for e in per_type.items() if e[1] > 0), key=lambda e: (-e[1], e[0]))
    return {
        "tokens_per_s": summed["tokens_total"] / elapsed,
        "cache_hit_rate": summed["cache_hits_total"] / lookups if lookups >= MIN_RATIO_EVENTS else None,
        "cache_lookups": lookups,
        "errors": [{"error": e, "per_s": n / elapsed} for e, n in top[:ERROR_TYPES_SHOWN]],
        "other_error_types": max(0, len(top) - ERROR_TYPES_SHOWN),
    }


class Reused:
    """Values that are slow to compute and change slowly, kept per key for `seconds` (or the
    `seconds` of a call) so that live updates (one per view per second) reuse them. A value's
    age counts from when it was computed here, or from `at(value)` when it says itself how old
    it is. Keys come from typed filters: past `most` of them, all are dropped."""

    def __init__(self, seconds: float, most: int = 256) -> None:
        self.seconds, self.most = seconds, most
        self._kept: dict = {}
        self._lock = threading.Lock()

    def get(self, key, compute, seconds: float | None = None, at=None):
        now = time.time()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and now - kept[0] < (self.seconds if seconds is None else seconds):
            return kept[1]
        value = compute()
        with self._lock:
            if len(self._kept) >= self.most:
                self._kept.clear()
            self._kept[key] = (now if at is None else at(value), value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


# The overview's outliers: agents far above the other agents of their node, in latency, in
# memory, and in how fast their memory grows (a young leak). The median response time over an
# hour: an agent's own p95 of a few dozen responses an hour is too noisy to tell it from its
# peers'. A judgement reads every agent's rows, so live updates reuse one (outliers last for
# minutes).
OUTLIER_CHECKS = (
    ("agent_response_ms", "p50", 3600),
    ("agent_memory_bytes", "max", 3600),
    ("agent_memory_bytes", query.GROWTH, 300),  # the seeded growth rule's 5 minutes
)
OUTLIER_ROWS = 10
_outliers = Reused(seconds=30)


def outlier_rows(node: str) -> list[dict]:
    return _outliers.get(node, lambda: _judge_outliers(node))


def _judge_outliers(node: str) -> list[dict]:
    now = time.time()
    rows = []
    for metric, stat, window_s in OUTLIER_CHECKS:
        try:
            judged = outliers.find(
                metric,
                stat,
                window_s,
                "node",
                min_peers=settings.OUTLIER_MIN_PEERS,
                min_count=settings.OUTLIER_MIN_COUNT if stat in query.PERCENTILES else 1,
                node=node,
                now=now,
            )
        except UnknownMetric:
            continue
        kind = units.of_metric(metric, stat)
        rows += [
            {
                **j.as_json(),
                "metric": metric,
                "stat": stat,
                "window": window_s,
                "shown": {
                    "value": units.readable(j.value, kind),
                    "peer_median": units.readable(j.peer_median, kind),
                    "peer_band": [units.readable(x, kind) for x in j.peer_band],
                },
            }
            for j in judged
            if j.outlier()
        ]
    return sorted(rows, key=lambda r: -r["mads"])[:OUTLIER_ROWS]


def _active_agents(view: View, per_node: query.Top) -> int:
    if view.agent:
        return 1
    return int(sum(v["max"] for v in per_node.rows.values()) + per_node.folded_sum)


def nodes(active: query.Top) -> list[dict]:
    """The busiest nodes in name order (bars that keep their place from one update to the
    next), then the others as one bar: the busiest of them, and how many they are."""
    capacity = settings.NODE_CAPACITY_AGENTS
    rows = [
        {"node": n, "active_agents": int(v["max"]), "capacity": capacity}
        for n, v in sorted(active.rows.items())
    ]
    if active.others:
        rows.append(
            {
                "node": "others",
                "others": active.folded,
                "active_agents": int(active.others["max"]),
                "capacity": capacity,
            }
        )
    return rows


def latency(window: query.Window, ids: list[int], metric: str, title: str, scope: Scope) -> dict:
    stats = ["p50", "p95", "p99"]
    data = window.panel(ids, stats, buckets=30)
    series = _columns(data["series"], stats)
    return {
        "metric": metric,
        "title": title,
        "target": settings.LATENCY_TARGETS.get(metric),
        "stats": data["stats"],
        "histogram": _rounded(data["histogram"]),
        "series": series,
        "band": anomaly.band(anomaly.fitted(metric, "p95", scope, time.time()), series["t"], BAND_MADS)
        if ids
        else None,
    }


# The p95's usual band for the time of day on each latency chart: the baseline anomaly rules
# judge by (refit hourly), as wide as the default anomaly rule's tolerance.
BAND_MADS = 4.0


def _rounded(histogram: dict) -> dict:
    """Bucket edges to 4 significant digits: they only place bars on a log axis, and at full
    precision they would be most of every live update's bytes."""
    buckets = [
        {**b, "lower": float(f"{b['lower']:.4g}"), "upper": float(f"{b['upper']:.4g}")}
        for b in histogram["buckets"]
    ]
    return {**histogram, "buckets": buckets}


def _series(metric: str, view: View, stats: list[str]) -> dict:
    result = query.series_stats(metric, view.seconds, STEPS[view.window], stats, view.scope(metric))
    return _columns(result, stats)


def _columns(series: dict[str, list[tuple[int, float | None]]], stats: list[str]) -> dict:
    """{"t": [...], stat: [...]} from (time, value) pairs per stat: what the charts take."""
    return {"t": [t for t, _ in series[stats[0]]], **{s: [v for _, v in series[s]] for s in stats}}


def memory(view: View, live: AgentPeaks | None = None) -> dict:
    """Peak memory per agent over the last five minutes: the top N as bars (ties by name, as
    the store ranks them), the rest as "others" (how many, and the highest of them), and the
    distribution over all agents."""
    n = settings.BREAKDOWN_TOP_N
    if live is not None:
        per_agent = live.per_agent(view.node)
        if view.agent:
            per_agent = {a: v for a, v in per_agent.items() if a == view.agent}
        ranked = sorted(per_agent.items(), key=lambda item: (-item[1], item[0]))
        top, values = ranked[:n], [v for _, v in ranked]
        folded, highest_other = len(ranked[n:]), ranked[n][1] if len(ranked) > n else None
    else:
        read = query.top(
            peaks.METRIC,
            peaks.WINDOW_S,
            "agent",
            n,
            Scope(node=view.node, agent=view.agent),
            percentiles=False,
            rank="max",
            every_value=True,
        )
        top, values = [(a, v["max"]) for a, v in read.rows.items()], read.values
        folded, highest_other = read.folded, read.others["max"] if read.others else None
    return {
        "top": [{"agent": a, "mb": v / 1e6} for a, v in top],
        "others": {"agents": folded, "max_mb": None if highest_other is None else highest_other / 1e6},
        "distribution": _distribution([v / 1e6 for v in values]),
        "target_mb": settings.AGENT_MEMORY_TARGET_BYTES / 1e6,
    }


def _distribution(values: list[float], bins: int = 40) -> dict:
    """Agents per memory bin: 40 counts instead of a value per agent in every live update."""
    counts, edges = np.histogram(values, bins=bins) if values else (np.empty(0), np.empty(0))
    return {"agents": len(values), "edges": [round(float(e), 3) for e in edges], "counts": counts.tolist()}


def slowest(view: View, metric: str, by: str) -> list[dict]:
    """The most called tools (or models) of the scope, slowest (p95) first, then the others."""
    read = query.top(
        metric, view.seconds, by, settings.BREAKDOWN_TOP_N, Scope(node=view.node, agent=view.agent)
    )
    ranked = sorted(read.rows.items(), key=lambda kv: kv[1]["p95"] or 0, reverse=True)
    return [_percentiles(name, v, ("p50", "p95", "p99")) for name, v in ranked] + _others(
        read, ("p50", "p95", "p99")
    )


def _percentiles(name: str, values: dict, stats: tuple[str, ...]) -> dict:
    return {"name": name, "count": values["count"], **{s: values[s] for s in stats}}


def _others(read: query.Top, stats: tuple[str, ...]) -> list[dict]:
    """The row that stands for every group after the first: [] if there are none."""
    if read.others is None:
        return []
    return [{**_percentiles("others", read.others, stats), "others": read.folded}]


def tools(view: View) -> dict:
    """Percentiles of the most called tools, models and providers (the rest as one "others"
    row), each tool's and model's with the change of its p95 against the previous window."""
    now, n = time.time(), settings.BREAKDOWN_TOP_N
    scope = Scope(node=view.node, agent=view.agent)
    out = {"view": asdict(view)}
    stats = ("p50", "p90", "p95", "p99")
    for metric, by, key in [("tool_execution_ms", "tool", "tools"), ("llm_call_ms", "model", "models")]:
        current = query.top(metric, view.seconds, by, n, scope, now=now)
        previous = query.breakdown(
            metric, view.seconds, by, scope, now=now - view.seconds, names=list(current.rows)
        )
        rows = []
        for name, v in sorted(current.rows.items()):
            before = previous.get(name, {}).get("p95")
            change = (v["p95"] - before) / before if before else None
            rows.append({**_percentiles(name, v, stats), "p95_change": change})
        out[key] = rows + [{**row, "p95_change": None} for row in _others(current, stats)]
    providers = query.top("llm_call_ms", view.seconds, "provider", n, scope, now=now)
    stats = ("p50", "p95", "p99")
    out["providers"] = [_percentiles(name, v, stats) for name, v in sorted(providers.rows.items())]
    out["providers"] += _others(providers, stats)
    return out


# What the page shows of each firing alert, and where it comes from.
class _RuleUnits(NamedTuple):
    kind: str
    metric: str
    statistic: str


_ALERT_COLUMNS = {
    "rule": "rule__name",
    "severity": "rule__severity",
    "scope": "rule__scope",
    "subject": "subject",
    "value": "value",
    "threshold": "rule__threshold",
    "metric": "rule__metric",
    "statistic": "rule__statistic",
    "kind": "rule__kind",
    "since": "since",
}


def firing_alerts(view: View) -> list[dict]:
    """Alerts firing now, worst first; on a node or agent page only that node's or agent's."""
    states = AlertState.objects.filter(state=AlertState.State.FIRING, rule__enabled=True)
    if view.node or view.agent:
        states = states.filter(subject=view.agent or view.node)
    rows = []
    # As plain values: a model instance per row would be a large share of a live update's compute.
    for values in states.order_by("since").values_list(*_ALERT_COLUMNS.values())[:200]:
        row = dict(zip(_ALERT_COLUMNS, values, strict=True))
        # In the units the admin shows the rule in: days for a forecast rule, MADs for an
        # outlier rule, else the metric's.
        rule = _RuleUnits(row.pop("kind"), row["metric"], row["statistic"])
        row["shown"] = {"value": measured(rule, row["value"]), "threshold": shown(rule, row["threshold"])}
        row["since"] = row["since"].isoformat()
        rows.append(row)
    return sorted(rows, key=lambda r: r["severity"] != "critical")
