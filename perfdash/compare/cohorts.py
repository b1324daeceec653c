"""Two cohorts of one metric read from the rollups, as the cells `compare.py` compares.

A cohort is a scope (the fleet, a node or an agent, and at most one dimension tag) and a time
range. Its cells are its agents' rollup rows merged per (agent, time block): the agent-level
keys narrowed by the cohort's tag hold exactly its points. An agent-level read costs a row per
agent per minute (or hour), so a cohort with more agents than `ROW_BUDGET` rows allow over its
range is read from its nodes' keys instead, one unit per node.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from django.conf import settings

from collectors.protocol import COUNTER_SUFFIX
from perfdash.compare.compare import (
    COUNTER_STATS,
    INSUFFICIENT,
    STATS,
    Cells,
    Comparison,
    Options,
    compare,
    histogram_pair,
)
from perfdash.lib.durations import DAY_S, HOUR_S
from perfdash.metrics import keys, query
from perfdash.metrics.models import WELL_KNOWN_METRICS
from perfdash.metrics.rollup import combine, group_label
from perfdash.metrics.scope import Scope, UnknownMetric

# Rows one cohort may read agent by agent. Beyond it (a large fleet over hours, or any fleet
# over days), its agents are read per node: a read of PostgreSQL rows costs far more than the
# bootstrap of their cells.
ROW_BUDGET = 20_000
# Time blocks: at least 5 minutes (shorter ones would split an episode's effect into blocks
# that look independent), and so that a range has at most about 48 of them.
MIN_BLOCK_S = 300
MAX_BLOCKS = 48
# Ranges longer than this are read from hour rows, in blocks of whole hours.
HOURLY_OVER_S = 12 * HOUR_S


@dataclass(frozen=True)
class Cohort:
    scope: Scope
    start: int  # Unix seconds, on a minute
    end: int
    # An agent left out of a node's: "the other agents of its node", read agent by agent
    # whatever ROW_BUDGET says (one node's agents), since a node's own rows include it.
    except_agent: str = ""


@dataclass(frozen=True)
class Plan:
    """How both cohorts are read: the same block length for both, so that blocks of the same
    time are the same blocks."""

    slot_s: int
    hourly: bool  # whole hours from hour rows (the edges and unfolded deltas from minute rows)


def stats_for(metric: str) -> tuple[str, ...]:
    """Counters compare their rate; everything else its mean and quantiles."""
    kind = WELL_KNOWN_METRICS.get(metric)
    counter = kind == "counter" if kind else metric.endswith(COUNTER_SUFFIX)
    return COUNTER_STATS if counter else STATS


def plan(a: Cohort, b: Cohort, now: float) -> Plan:
    span = max(a.end - a.start, b.end - b.start)
    minutes_kept_from = now - settings.MINUTE_ROLLUP_RETENTION_DAYS * DAY_S + HOUR_S
    if span <= HOURLY_OVER_S and min(a.start, b.start) >= minutes_kept_from:
        return Plan(60 * max(MIN_BLOCK_S // 60, math.ceil(span / 60 / MAX_BLOCKS)), hourly=False)
    return Plan(HOUR_S * max(1, math.ceil(span / HOUR_S / MAX_BLOCKS)), hourly=True)


def aligned(cohort: Cohort, plan: Plan, now: float) -> Cohort:
    """Read by the hour, a range older than the minute rows starts and ends on whole hours."""
    if not plan.hourly:
        return cohort
    floor = now - settings.MINUTE_ROLLUP_RETENTION_DAYS * DAY_S + HOUR_S
    start = cohort.start // HOUR_S * HOUR_S if cohort.start < floor else cohort.start
    end = -(-cohort.end // HOUR_S) * HOUR_S if cohort.end < floor else cohort.end
    return replace(cohort, start=start, end=end)


def compare_cohorts(
    metric: str, a: Cohort, b: Cohort, options: Options, now: float | None = None, *, histograms: bool = False
) -> Comparison:
    """With `histograms`, the answer carries both cohorts' points binned alike for a chart."""
    if not query.known_metric(metric):
        raise UnknownMetric(metric)
    now = time.time() if now is None else now
    how = plan(a, b, now)
    a, b = aligned(a, how, now), aligned(b, how, now)
    with keys.pinned():
        cells_a, cells_b = read(metric, a, how, now), read(metric, b, how, now)
    result = compare(cells_a, cells_b, options)
    if histograms:
        result.histograms = histogram_pair(cells_a, cells_b)
    result.notes.append(f"a: {_range(a)}; b: {_range(b)}.")
    if how.hourly:
        result.notes.append(
            f"Read by the hour (minute rollups are kept for {settings.MINUTE_ROLLUP_RETENTION_DAYS} "
            "days, and ranges over 12 h are cut into blocks of whole hours): the minutes with points "
            "a comparison needs are counted in hours."
        )
    return result


def _range(c: Cohort) -> str:
    def iso(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f"{iso(c.start)} to {iso(c.end)}"


def read(metric: str, cohort: Cohort, plan: Plan, now: float) -> Cells:
    """The cohort's points as cells of (agent or node, time block)."""
    start, end = cohort.start, cohort.end
    h0, h1 = query.whole_hours(start, end) if plan.hourly else (end, end)
    periods = (h1 - h0) // HOUR_S + (end - start - (h1 - h0)) // 60
    units, level, agents = _units(metric, cohort, periods)
    rows = query.read_rows(units.ids.tolist(), start, end, h0, h1)
    slot = rows.period // plan.slot_s
    groups = combine(
        group_label(units.of(rows.key), slot),
        rows.count,
        rows.sum,
        rows.min,
        rows.max,
        rows.pair_row,
        rows.pair_key,
        rows.pair_count,
    )
    slots = np.arange(start // plan.slot_s, (end - 1) // plan.slot_s + 1)
    passed = min(end, now)
    seconds = np.clip(
        np.minimum((slots + 1) * plan.slot_s, passed) - np.maximum(slots * plan.slot_s, start), 0, None
    )
    return Cells(
        groups=groups,
        units=tuple(units.names),
        level=level,
        agents=agents,
        start=start,
        end=end,
        slot_s=plan.slot_s,
        slots=slots,
        seconds=seconds.astype(np.float64),
        minutes=len(np.unique(rows.period)),
    )


def _units(metric: str, cohort: Cohort, periods: int) -> tuple[query.Members, str, int]:
    """The keys to read, each labelled with its unit (its agent, or its node); the level; and
    how many agents the cohort has."""
    scope = cohort.scope
    of_agents = [(k, a) for k, a in keys.members(metric, "agent", scope) if a != cohort.except_agent]
    agents = len({a for _, a in of_agents})
    if scope.agent or cohort.except_agent or len(of_agents) * periods <= ROW_BUDGET:
        return query.Members.of_pairs(of_agents), "agent", agents
    of_nodes = [(k, n) for k, n in keys.members(metric, "node", scope) if not scope.node or n == scope.node]
    return query.Members.of_pairs(of_nodes), "node", agents


# A breakdown compares at most this many values (those with the most points in both cohorts):
# each is a comparison of its own.
BREAKDOWN_VALUES = 12


def breakdown(
    metric: str, a: Cohort, b: Cohort, by: str, options: Options, now: float | None = None
) -> tuple[list[dict], int]:
    """The same comparison for each value of the dimension tag `by` (tool, model, ...) within
    both cohorts, largest effect first and undecided ones last; and how many values were left
    out. Cohorts that already filter on a tag cannot be narrowed by another: the rollups keep
    one tag per row."""
    now = time.time() if now is None else now
    totals: dict[str, int] = {}
    for c in (a, b):
        pairs = keys.members(metric, by, c.scope)
        if not pairs:
            continue
        name_of = dict(pairs)
        hours = query.whole_hours(c.start, c.end)
        for key, count, *_ in query.key_totals(sorted(name_of), c.start, c.end, *hours):
            totals[name_of[key]] = totals.get(name_of[key], 0) + count
    chosen = sorted(totals, key=lambda v: (-totals[v], v))[:BREAKDOWN_VALUES]
    rows = []
    for value in chosen:
        narrowed = [replace(c, scope=replace(c.scope, tag_key=by, tag_value=value)) for c in (a, b)]
        result = compare_cohorts(metric, *narrowed, options, now)
        answer = result.as_json()
        shown = {k: answer[k] for k in ("a", "b", "diff", "verdict")}
        rows.append({"value": value, **shown, "comparison": result})
    rows.sort(key=lambda r: _effect(r["diff"][options.stat]))
    return rows, len(totals) - len(chosen)


def _effect(diff: dict) -> tuple[int, float]:
    if diff["verdict"] == INSUFFICIENT or diff["rel"] is None:
        return 2, 0.0
    return (0 if diff["verdict"] != "no_change" else 1), -abs(diff["rel"])
