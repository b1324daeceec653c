"""The history of each capacity target, one value per step per subject, from the rollups.

Hourly from the hour rollups once there are two days of data; before that, 10-minute steps
from the minute rollups, so a new installation gets a (trend-only) forecast within the hour.
Sums and maxima are aggregated in PostgreSQL: sketches are read only for response p95.
The newest steps are read only once they are complete (see `_complete_end`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.db import connection

from perfdash.lib.durations import DAY_S, HOUR_S
from perfdash.metrics import query
from perfdash.metrics.scope import UnknownMetric

HOURLY_AFTER_S = 2 * DAY_S
FINE_STEP_S = 600
_TABLES = {3600: ("metrics_rollup_hour", "hour"), FINE_STEP_S: ("metrics_rollup_minute", "minute")}
Series = tuple[np.ndarray, np.ndarray]  # (period starts in Unix seconds, values)
# A step is complete once newer data has arrived and its coverage is at least MIN_COVERAGE of
# the best in the hour before it; only the newest ARRIVING_S of a history can be cut so
# (see `_complete_end`). A fleet whose agents swing 3x a day (a sine) loses at most 14 % in an
# hour: its decline is not mistaken for steps still arriving.
MIN_COVERAGE = 0.85
ARRIVING_S = 6 * HOUR_S


@dataclass
class History:
    step_s: int
    series: dict[str, Series]  # subject (a node, or "" for the fleet) -> values per step
    nodes: int  # nodes reporting at the end of the complete history
    # Response p95 only: active agents per node over the same steps, and the fleet's total.
    load: dict[str, Series] = field(default_factory=dict)
    left_out: int = 0  # the fleet's newest steps left out as still arriving


def read(kind: str, days: int, now: float) -> History:
    step = choose_step(now)
    end = int(now) // step * step  # the step still running is left out: it would look like a dip
    span = days * DAY_S if step == HOUR_S else min(days * DAY_S, HOURLY_AFTER_S)
    start = max(end - span, end - query.MAX_SERIES_POINTS * step)
    agents = _run(_NODE_MAX, "active_agents", step, start, end)
    agents_in = _arrived("active_agents", "node", step, start, end)
    nodes = _nodes_now(agents, agents_in.fleet, step)
    if kind == "node_agents":
        return _history(step, agents, agents_in, nodes)
    if kind in ("node_memory", "fleet_memory"):
        memory = _run(_NODE_MEMORY, "agent_memory_bytes", step, start, end)
        memory_in = _arrived("agent_memory_bytes", "agent", step, start, end)
        past = _history(step, memory, memory_in, nodes or _nodes_now(memory, memory_in.fleet, step))
        if kind == "fleet_memory":
            past.series = {"": past.series[""]}
        return past
    if kind == "fleet_points":
        points = _fleet_points(step, start, end)
        return _history(step, {}, _arrived("", "node", step, start, end), nodes, points)
    if kind == "response_p95":
        total = agents_in.cut(_total(agents))
        reporting = agents_in.cut(_total({n: (t, np.ones(len(t))) for n, (t, _) in agents.items()}))
        load = {"": total, "per_node": _ratio(total, reporting)}
        p95 = _response_p95(step, start, end)
        return _history(step, {}, _arrived("agent_response_ms", "node", step, start, end), nodes, p95, load)
    raise ValueError(f"unknown capacity target kind {kind!r}")


def _history(
    step: int,
    per_node: dict[str, Series],
    arrived: _Arrived,
    nodes: int,
    fleet: Series | None = None,
    load: dict[str, Series] | None = None,
) -> History:
    """Each node's series up to its own complete end; the fleet's (by default the sum of the
    nodes' series) up to the fleet's."""
    fleet = _total(per_node) if fleet is None else fleet
    kept = arrived.cut(fleet)
    series = {node: arrived.cut(s, node) for node, s in per_node.items()}
    return History(step, {**series, "": kept}, nodes, load or {}, len(fleet[0]) - len(kept[0]))


def choose_step(now: float) -> int:
    """Hourly once the hour rollups hold two days of any metric."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM min(hour)) FROM metrics_rollup_hour WHERE hour >= to_timestamp(%s)",
            [now - 90 * DAY_S],
        )
        first = cur.fetchone()[0]
    return 3600 if first is not None and now - float(first) >= HOURLY_AFTER_S else FINE_STEP_S


# Per node and step: {period} is the step's start. Keys at node scope have no agent; agent keys
# carry their node.
_NODE_MAX = """
SELECT k.node, {period}, max(r.max) FROM {table} r JOIN metrics_rollupkey k ON k.id = r.key_id
 WHERE k.metric = %(metric)s AND k.agent = '' AND k.node <> '' AND k.tag_key = '' AND {when}
 GROUP BY 1, 2"""
# Memory of a node: the sum over its agents of each agent's mean in the step.
_NODE_MEMORY = """
SELECT node, t, sum(v) FROM (
  SELECT k.node, k.agent, {period} AS t, sum(r.sum) / sum(r.count) AS v
    FROM {table} r JOIN metrics_rollupkey k ON k.id = r.key_id
   WHERE k.metric = %(metric)s AND k.agent <> '' AND k.tag_key = '' AND {when}
   GROUP BY 1, 2, 3) per_agent
 GROUP BY 1, 2"""
_FLEET_POINTS = """
SELECT '', {period}, sum(r.count)::float8 / %(step)s
  FROM {table} r JOIN metrics_rollupkey k ON k.id = r.key_id
 WHERE k.node = '' AND k.agent = '' AND k.tag_key = '' AND {when}
 GROUP BY 1, 2"""


# Coverage: the minute-rollup rows (one per key and minute with data) each node has in each
# step, of the keys a target adds up: the node's own (node scope) or its agents'. A metric ""
# takes every metric.
_COVERAGE = """
SELECT k.node, extract(epoch FROM r.minute)::int8 / %(step)s * %(step)s, count(*)
  FROM metrics_rollup_minute r JOIN metrics_rollupkey k ON k.id = r.key_id
 WHERE (%(metric)s = '' OR k.metric = %(metric)s) AND k.agent {agent} '' AND k.node <> ''
   AND k.tag_key = '' AND r.minute >= to_timestamp(%(since)s)
 GROUP BY 1, 2"""


def _run(sql: str, metric: str, step: int, start: int, end: int) -> dict[str, Series]:
    table, column = _TABLES[step]
    sql = sql.format(
        table=table,
        period=f"(extract(epoch FROM r.{column})::int8 / %(step)s * %(step)s)",
        when=f"r.{column} >= to_timestamp(%(start)s) AND r.{column} < to_timestamp(%(end)s)",
    )
    rows: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with connection.cursor() as cur:
        cur.execute(sql, {"metric": metric, "step": step, "start": start, "end": end})
        for subject, t, value in cur.fetchall():
            rows[subject].append((int(t), float(value)))
    return {subject: _arrays(pairs) for subject, pairs in sorted(rows.items())}


def _fleet_points(step: int, start: int, end: int) -> Series:
    return _run(_FLEET_POINTS, "", step, start, end).get("", _empty())


def _response_p95(step: int, start: int, end: int) -> Series:
    try:
        points = query.series("agent_response_ms", end - start, step, "p95", now=end - 1)
    except UnknownMetric:
        return _empty()
    return _arrays([(t, v) for t, v in points if v is not None and t < end])


def _arrays(pairs: list[tuple[int, float]]) -> Series:
    pairs.sort()
    return np.array([t for t, _ in pairs], float), np.array([v for _, v in pairs], float)


def _empty() -> Series:
    return np.empty(0), np.empty(0)


def _total(per_subject: dict[str, Series]) -> Series:
    """The sum over subjects at each step any of them has."""
    if not per_subject:
        return _empty()
    times = np.unique(np.concatenate([t for t, _ in per_subject.values()]))
    total = np.zeros(len(times))
    for t, y in per_subject.values():
        total[np.searchsorted(times, t)] += y
    return times, total


def _ratio(a: Series, b: Series) -> Series:
    common, ia, ib = np.intersect1d(a[0], b[0], return_indices=True)
    keep = b[1][ib] > 0
    return common[keep], a[1][ia][keep] / b[1][ib][keep]


def _nodes_now(per_node: dict[str, Series], complete_end: int, step: int) -> int:
    """Nodes that reported in the last complete step or the hour before it (a late collector):
    the nodes of the recent data, not those that a step still arriving happens to hold."""
    since = complete_end - step - HOUR_S
    return sum(1 for t, _ in per_node.values() if np.any((t >= since) & (t < complete_end)))


@dataclass
class _Arrived:
    """Where the complete history ends (the end of its newest complete step): the fleet's,
    and each node's."""

    fleet: int
    nodes: dict[str, int]

    def cut(self, series: Series, node: str = "") -> Series:
        keep = series[0] < (self.nodes.get(node, self.fleet) if node else self.fleet)
        return series[0][keep], series[1][keep]


def _arrived(metric: str, level: str, step: int, start: int, end: int) -> _Arrived:
    """How far the history of `metric`'s keys at `level` ("node" or "agent") is complete."""
    since = max(start, end - ARRIVING_S)
    sql = _COVERAGE.format(agent="=" if level == "node" else "<>")
    rows: dict[str, Counter[int]] = defaultdict(Counter)
    with connection.cursor() as cur:
        cur.execute(sql, {"metric": metric, "step": step, "since": since - _reference_steps(step) * step})
        for node, t, count in cur.fetchall():
            rows[node][int(t)] = count
    fleet = sum(rows.values(), Counter())
    return _Arrived(
        _complete_end(fleet, step, since, end),
        {node: _complete_end(r, step, since, end) for node, r in rows.items()},
    )


def _complete_end(coverage: dict[int, int], step: int, since: int, end: int) -> int:
    """The end of the newest complete step in [since, end), or `since` if none is.

    A step is complete when
    1. newer data has arrived (a later step has some, the one still running included): until
       then it may still be filling, however whole it looks; and
    2. its coverage (see _COVERAGE) is at least MIN_COVERAGE of the best coverage among the
       steps of the hour before it.
    Data goes missing at the newest end of a history: a backfill is sent oldest first, node by
    node, in batches that wait in the ingest queue, and their rows wait for the compactor; a
    step that lacks some agents or minutes would read as a fall (a sum of per-agent means, a
    rate of points). So the history stops at its newest complete step. A fleet that shrinks by
    itself loses less than 1 - MIN_COVERAGE of its coverage in an hour; a node gone for good
    is taken as gone an hour later. Steps older than `since` are taken as they are."""
    newer = any(t >= end for t in coverage)
    before = _reference_steps(step)
    for t in range(end - step, since - 1, -step):
        here = coverage.get(t, 0)
        best = max(coverage.get(t - k * step, 0) for k in range(1, before + 1))
        if newer and here >= MIN_COVERAGE * best:
            return t + step
        newer = newer or here > 0
    return since


def _reference_steps(step: int) -> int:
    return max(1, HOUR_S // step)
