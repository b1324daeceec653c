"""The history of each capacity target, one value per step per subject, from the rollups.

Hourly from the hour rollups once there are two days of data; before that, 10-minute steps
from the minute rollups, so a new installation gets a (trend-only) forecast within the hour.
Sums and maxima are aggregated in PostgreSQL: sketches are read only for response p95.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.db import connection

from perfdash.metrics import query
from perfdash.metrics.scope import UnknownMetric

DAY_S = 86_400
HOURLY_AFTER_S = 2 * DAY_S
FINE_STEP_S = 600
_TABLES = {3600: ("metrics_rollup_hour", "hour"), FINE_STEP_S: ("metrics_rollup_minute", "minute")}
Series = tuple[np.ndarray, np.ndarray]  # (period starts in Unix seconds, values)


@dataclass
class History:
    step_s: int
    series: dict[str, Series]  # subject (a node, or "" for the fleet) -> values per step
    nodes: int  # nodes reporting in the latest step
    # Response p95 only: active agents per node over the same steps, and the fleet's total.
    load: dict[str, Series] = field(default_factory=dict)


def read(kind: str, days: int, now: float) -> History:
    step = choose_step(now)
    end = int(now) // step * step  # the step still running is left out: it would look like a dip
    span = days * DAY_S if step == 3600 else min(days * DAY_S, HOURLY_AFTER_S)
    start = max(end - span, end - query.MAX_SERIES_POINTS * step)
    agents = _run(_NODE_MAX, "active_agents", step, start, end)
    nodes = _nodes_now(agents, end - step)
    if kind == "node_agents":
        return History(step, {**agents, "": _total(agents)}, nodes)
    if kind in ("node_memory", "fleet_memory"):
        memory = _run(_NODE_MEMORY, "agent_memory_bytes", step, start, end)
        nodes = nodes or _nodes_now(memory, end - step)
        if kind == "node_memory":
            return History(step, {**memory, "": _total(memory)}, nodes)
        return History(step, {"": _total(memory)}, nodes)
    if kind == "fleet_points":
        return History(step, {"": _fleet_points(step, start, end)}, nodes)
    if kind == "response_p95":
        total = _total(agents)
        reporting = _total({n: (t, np.ones(len(t))) for n, (t, _) in agents.items()})
        load = {"": total, "per_node": _ratio(total, reporting)}
        return History(step, {"": _response_p95(step, start, end)}, nodes, load)
    raise ValueError(f"unknown capacity target kind {kind!r}")


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


def _nodes_now(per_node: dict[str, Series], last_step: int) -> int:
    """Nodes that reported in the last whole step (or the one before: a late collector)."""
    return sum(1 for t, _ in per_node.values() if len(t) and t[-1] >= last_step - 3600)
