"""What each dashboard page shows, as plain data built from the query module.

Views render it as JSON for the first paint; the live consumer sends the same data again
whenever new points have been committed (at most once per second per page).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from django.conf import settings

from perfdash.alerts.models import AlertRule, AlertState
from perfdash.dashboard import capacity_page, peaks
from perfdash.dashboard.peaks import AgentPeaks
from perfdash.metrics import keys, query
from perfdash.metrics.scope import Scope, check_text

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
TOP_N = 20
MAX_GROWTH = 2.0  # what-if growth per week: -50 % to +200 %


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
        LLM metrics; other metrics see only node and agent."""
        tag_key, tag_value = "", ""
        if self.tool and metric == "tool_execution_ms":
            tag_key, tag_value = "tool", self.tool
        elif self.model and metric == "llm_call_ms":
            tag_key, tag_value = "model", self.model
        return Scope(node=self.node, agent=self.agent, tag_key=tag_key, tag_value=tag_value)

    def key(self) -> tuple:
        return tuple(asdict(self).values())


def build(view: View, live: AgentPeaks | None = None) -> dict:
    """The page's data. `live`: memory per agent as this process keeps it (peaks.py) instead
    of read from the store."""
    if view.page == "capacity":
        return capacity_page.build(view.growth, view.node)
    with keys.pinned():  # one look for new rollup keys, not one per read
        if view.page == "tools":
            return tools(view)
        return overview(view, live)


def overview(view: View, live: AgentPeaks | None = None) -> dict:
    # Slow-changing things first, and last the latency panels and headline counts (two reads of
    # the same window) and memory: what changes every second is read nearest the send.
    active = query.breakdown("active_agents", 120, "node", percentiles=False)  # newest per node
    data = {"view": asdict(view), "alerts": firing_alerts(view)}
    if not view.agent:
        data["nodes"] = nodes(view, active)
    else:
        data["memory_series"] = _series("agent_memory_bytes", view, ["max"])
        data["slowest"] = {
            "tools": slowest(view, "tool_execution_ms", "tool"),
            "models": slowest(view, "llm_call_ms", "model"),
        }
    scope = view.scope()
    shown = {metric: keys.ids(metric, view.scope(metric)) for metric, _ in LATENCY}
    window = query.read_window(
        sorted({i for ids in shown.values() for i in ids}), view.seconds, STEPS[view.window]
    )
    data["latency"] = [latency(window, shown[metric], metric, title) for metric, title in LATENCY]
    responses = data["latency"][0]["stats"]["count"]  # agent_response_ms, the first of LATENCY
    errors, every = keys.ids("errors_total", scope), keys.every_metric(scope)
    totals = window.totals([*{*errors, *every}])
    error_count = sum(totals.get(key, (0, 0.0))[1] for key in errors)
    data["kpis"] = {
        "active_agents": _active_agents(view, active),
        "points_per_s": sum(totals.get(key, (0, 0.0))[0] for key in every) / window.elapsed,
        "errors_per_s": error_count / window.elapsed,
        "error_ratio": error_count / responses if responses else None,
        "responses": responses,
    }
    data["memory"] = memory(view, live)
    return data


def _active_agents(view: View, per_node: dict) -> int:
    if view.agent:
        return 1
    if view.node:
        return int(per_node.get(view.node, {}).get("max") or 0)
    return int(sum(v["max"] for v in per_node.values()))


def nodes(view: View, active: dict) -> list[dict]:
    capacity = settings.NODE_CAPACITY_AGENTS
    rows = [{"node": n, "active_agents": int(v["max"]), "capacity": capacity} for n, v in active.items()]
    return [r for r in rows if not view.node or r["node"] == view.node]


def latency(window: query.Window, ids: list[int], metric: str, title: str) -> dict:
    stats = ["p50", "p95", "p99"]
    data = window.panel(ids, stats, buckets=30)
    return {
        "metric": metric,
        "title": title,
        "target": settings.LATENCY_TARGETS.get(metric),
        "stats": data["stats"],
        "histogram": _rounded(data["histogram"]),
        "series": _columns(data["series"], stats),
    }


def _rounded(histogram: dict) -> dict:
    """Bucket edges to 4 significant digits: they only place bars on a log axis, and at full
    precision they were two thirds of every live update's bytes."""
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
    """Peak memory per agent over the last five minutes: the top N as bars, the rest summed up
    as "others"."""
    if live is not None:
        per_agent = live.per_agent(view.node)
    else:
        scope = Scope(node=view.node)
        rows = query.breakdown(peaks.METRIC, peaks.WINDOW_S, "agent", scope, percentiles=False)
        per_agent = {agent: v["max"] for agent, v in rows.items()}
    if view.agent:
        per_agent = {a: v for a, v in per_agent.items() if a == view.agent}
    ranked = sorted(((v, a) for a, v in per_agent.items()), reverse=True)
    mb = [value / 1e6 for value, _ in ranked]
    return {
        "top": [{"agent": a, "mb": v / 1e6} for v, a in ranked[:TOP_N]],
        "others": {"agents": max(0, len(ranked) - TOP_N), "max_mb": mb[TOP_N] if len(mb) > TOP_N else None},
        "distribution": _distribution(mb),
        "target_mb": settings.AGENT_MEMORY_TARGET_BYTES / 1e6,
    }


def _distribution(values: list[float], bins: int = 40) -> dict:
    """Agents per memory bin: 40 counts instead of a value per agent in every live update."""
    counts, edges = np.histogram(values, bins=bins) if values else (np.empty(0), np.empty(0))
    return {"agents": len(values), "edges": [round(float(e), 3) for e in edges], "counts": counts.tolist()}


def slowest(view: View, metric: str, by: str, n: int = 10) -> list[dict]:
    rows = query.breakdown(metric, view.seconds, by, Scope(node=view.node, agent=view.agent))
    ranked = sorted(rows.items(), key=lambda kv: kv[1]["p95"] or 0, reverse=True)[:n]
    return [
        {"name": name, "count": v["count"], "p50": v["p50"], "p95": v["p95"], "p99": v["p99"]}
        for name, v in ranked
    ]


def tools(view: View) -> dict:
    """Percentiles per tool and per model, with the change against the previous window."""
    now = time.time()
    scope = Scope(node=view.node, agent=view.agent)
    out = {"view": asdict(view)}
    for metric, by, key in [("tool_execution_ms", "tool", "tools"), ("llm_call_ms", "model", "models")]:
        current = query.breakdown(metric, view.seconds, by, scope, now=now)
        previous = query.breakdown(metric, view.seconds, by, scope, now=now - view.seconds)
        rows = []
        for name, v in sorted(current.items()):
            before = previous.get(name, {}).get("p95")
            change = (v["p95"] - before) / before if before else None
            rows.append(
                {
                    "name": name,
                    "count": v["count"],
                    "p50": v["p50"],
                    "p90": v["p90"],
                    "p95": v["p95"],
                    "p99": v["p99"],
                    "p95_change": change,
                }
            )
        out[key] = rows
    providers = query.breakdown("llm_call_ms", view.seconds, "provider", scope, now=now)
    out["providers"] = [
        {"name": n, "count": v["count"], "p50": v["p50"], "p95": v["p95"], "p99": v["p99"]}
        for n, v in sorted(providers.items())
    ]
    return out


# What the page shows of each firing alert, and where it comes from.
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
    # As plain values: a model instance per row was a third of a live update's compute.
    for values in states.order_by("since").values_list(*_ALERT_COLUMNS.values())[:200]:
        row = dict(zip(_ALERT_COLUMNS, values, strict=True))
        # A forecast rule's value is the projected days until its target's limit.
        row["unit"] = "days" if row.pop("kind") == AlertRule.Kind.FORECAST else ""
        row["since"] = row["since"].isoformat()
        rows.append(row)
    return sorted(rows, key=lambda r: r["severity"] != "critical")
