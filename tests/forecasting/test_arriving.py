"""Histories whose newest steps are still being ingested: a new installation's demo backfill,
sent oldest first node by node, refitted before it is all in."""

from __future__ import annotations

import numpy as np
import pytest

from perfdash.dashboard import capacity_page
from perfdash.forecasting import capacity, history
from perfdash.forecasting.models import CapacityForecast
from tests.forecasting.conftest import HOUR, NOW

MINUTE = 60
STEP = 600  # under two days of history: 10-minute steps
AGENT_BYTES = 500e6
NODES = ("node-1", "node-2", "node-3", "node-4")
# What the backfill has sent so far: a sample a minute from a step's start, up to 6 minutes
# into a step two hours before NOW.
FRONTIER = NOW - 1800 - 2 * HOUR + 6 * MINUTE
FIRST = NOW - 1800 - 6 * HOUR


def backfill(fleet, until: dict[str, float] | None = None, last: float = FRONTIER) -> None:
    """4 nodes of 5 agents (500 MB each: 10 GB in all), each node's collector reporting 50
    active agents, a sample a minute from FIRST up to `last`, or to `until["node/agent"]` or
    `until["node"]`."""
    until = until or {}
    for node in NODES:
        for agent in ("collector", *(f"a{i}" for i in range(5))):
            ts = np.arange(FIRST, until.get(f"{node}/{agent}", until.get(node, last)), MINUTE)
            if agent == "collector":
                fleet.add("active_agents", node, agent, ts, 50.0)
            else:
                fleet.add("agent_memory_bytes", node, f"{node}-{agent}", ts, AGENT_BYTES)
    fleet.store()


# node-3 is 12 minutes behind the frontier; node-4's collector and 4 of its 5 agents, 26.
BEHIND = {
    "node-3": FRONTIER - 12 * MINUTE,
    **{f"node-4/{agent}": FRONTIER - 26 * MINUTE for agent in ("collector", "a0", "a1", "a2", "a3")},
}


def test_steps_that_hold_only_some_agents_are_left_out(fleet):
    backfill(fleet, BEHIND)

    past = history.read("fleet_memory", days=28, now=NOW)

    t, y = past.series[""]
    assert past.step_s == STEP
    # Every step kept holds all 20 agents; the three newest (16, 16 and 11 agents) are left out.
    assert y == pytest.approx(np.full(len(t), 20 * AGENT_BYTES))
    assert t[-1] == FRONTIER - 26 * MINUTE - STEP and past.left_out == 3


def test_each_nodes_history_ends_at_its_own_newest_complete_step(fleet):
    backfill(fleet, BEHIND)

    past = history.read("node_memory", days=28, now=NOW)

    for node in NODES:
        t, y = past.series[node]
        assert y == pytest.approx(np.full(len(t), 5 * AGENT_BYTES)), node
    assert past.series["node-1"][0][-1] == FRONTIER - 6 * MINUTE - STEP  # the step still filling is out
    assert past.series["node-4"][0][-1] == FRONTIER - 26 * MINUTE - STEP


def test_the_node_count_is_of_the_nodes_in_the_recent_data(fleet):
    backfill(fleet, BEHIND)

    for kind in ("node_agents", "fleet_memory", "fleet_points"):
        assert history.read(kind, days=28, now=NOW).nodes == 4, kind


def test_a_newest_step_that_lacks_only_its_last_minute_is_not_fitted(fleet):
    # 9 of the step's 10 minutes are in, from every agent: it looks whole but for its rate.
    backfill(fleet, last=FRONTIER + 3 * MINUTE)

    t, y = history.read("fleet_points", days=28, now=NOW).series[""]

    assert y == pytest.approx(np.full(len(t), 24 / MINUTE))  # 4 collectors and 20 agents a minute
    assert t[-1] == FRONTIER - 6 * MINUTE - STEP


def test_a_refit_during_the_backfill_forecasts_no_fall_and_counts_the_nodes(fleet):
    backfill(fleet, BEHIND)

    capacity.refit(now=NOW)

    rows = {r.target.kind: r for r in CapacityForecast.objects.filter(subject="")}
    memory, agents = rows["fleet_memory"], rows["node_agents"]
    assert min(memory.bands["mean"]) == pytest.approx(20 * AGENT_BYTES)
    assert min(agents.bands["mean"]) == pytest.approx(200)
    assert agents.current_nodes == 4
    assert "left out the newest 3 steps of history: still arriving" in agents.notes
    page = capacity_page.build(0.0, now=NOW)
    shown = {t["kind"]: t["recommendation"] for t in page["targets"]}
    assert shown["node_agents"]["current"] == 4 and "(now 4)" in shown["node_agents"]["text"]


def test_a_live_fleet_keeps_its_newest_step(fleet):
    backfill(fleet, last=NOW + MINUTE)  # into the step still running: NOW starts it

    past = history.read("fleet_memory", days=28, now=NOW)

    assert past.series[""][0][-1] == NOW - STEP and past.left_out == 0
    assert past.nodes == 4


def test_a_node_gone_for_good_is_counted_out_and_no_longer_holds_the_history_back(fleet):
    backfill(fleet, {"node-4": NOW - 2 * HOUR}, last=NOW + MINUTE)

    past = history.read("node_agents", days=28, now=NOW)

    assert past.nodes == 3
    t, y = past.series[""]
    assert t[-1] == NOW - STEP and y[-1] == 150


def test_a_fleet_that_shrinks_by_itself_keeps_its_newest_steps(fleet):
    # An agent leaves every half hour: 20 agents, then 16.
    leave = {f"{node}/a0": NOW - 2 * HOUR + i * 1800 for i, node in enumerate(NODES)}
    backfill(fleet, leave, last=NOW + MINUTE)

    past = history.read("fleet_memory", days=28, now=NOW)

    t, y = past.series[""]
    assert t[-1] == NOW - STEP and past.left_out == 0
    assert y[-1] == pytest.approx(16 * AGENT_BYTES)
