"""Capacity histories read from real rollups in PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from perfdash.forecasting import history
from tests.forecasting.conftest import HOUR, NOW


def test_active_agents_per_node_is_the_hourly_maximum_and_the_fleet_their_sum(fleet):
    fleet.hourly("active_agents", "node-1", "collector", 72, lambda ago: 500 - ago)
    fleet.hourly("active_agents", "node-1", "collector", 72, lambda ago: 400 + 0 * ago)  # lower: not the max
    fleet.hourly("active_agents", "node-2", "collector", 72, lambda ago: 300 + 0 * ago)
    fleet.store()

    past = history.read("node_agents", days=28, now=NOW)

    assert past.step_s == HOUR and past.nodes == 2
    t, y = past.series["node-1"]
    assert len(t) == 72 and t[-1] == NOW - 1800 - HOUR
    assert y[0] == 428 and y[-1] == 499
    assert np.array_equal(past.series[""][1], y + 300)


def test_memory_per_node_sums_the_mean_of_each_agent(fleet):
    fleet.hourly("agent_memory_bytes", "node-1", "a1", 60, lambda ago: 100e6 + 0 * ago)
    fleet.hourly("agent_memory_bytes", "node-1", "a1", 60, lambda ago: 200e6 + 0 * ago)  # mean 150 MB
    fleet.hourly("agent_memory_bytes", "node-1", "a2", 60, lambda ago: 50e6 + 0 * ago)
    fleet.hourly("agent_memory_bytes", "node-2", "a3", 60, lambda ago: 10e6 + 0 * ago)
    fleet.store()

    per_node = history.read("node_memory", days=28, now=NOW)
    total = history.read("fleet_memory", days=28, now=NOW)

    assert per_node.series["node-1"][1] == pytest.approx(np.full(60, 200e6))
    assert per_node.series["node-2"][1] == pytest.approx(np.full(60, 10e6))
    assert list(total.series) == [""]
    assert total.series[""][1] == pytest.approx(np.full(60, 210e6))


def test_fleet_points_per_second_counts_every_metric(fleet):
    ts = NOW - 1800 - HOUR * np.arange(60, -1, -1) + 60  # and one in the running hour
    fleet.add("tool_execution_ms", "node-1", "a1", np.repeat(ts, 36), 5.0)
    fleet.add("llm_call_ms", "node-2", "a2", np.repeat(ts, 72), 5.0)
    fleet.store()

    past = history.read("fleet_points", days=28, now=NOW)

    assert past.series[""][1] == pytest.approx(np.full(60, (36 + 72) / 3600))


def test_less_than_two_days_of_history_is_read_in_ten_minute_steps(fleet):
    ts = NOW - 600 * np.arange(30, -1, -1) + 10  # the last in the running step
    fleet.add("active_agents", "node-1", "collector", ts, np.arange(31.0))
    fleet.store()

    past = history.read("node_agents", days=28, now=NOW)

    assert past.step_s == 600
    assert np.array_equal(past.series["node-1"][1], np.arange(30.0))


def test_response_p95_comes_with_agents_per_node(fleet):
    for node in ("node-1", "node-2"):
        fleet.hourly("active_agents", node, "collector", 72, lambda ago: 100 + ago)
    ts = NOW - 1800 - HOUR * np.arange(72, -1, -1) + 60
    fleet.add("agent_response_ms", "node-1", "a1", np.repeat(ts, 100), np.tile(np.arange(1.0, 101.0), 73))
    fleet.store()

    past = history.read("response_p95", days=28, now=NOW)

    assert past.series[""][1] == pytest.approx(np.full(72, 95.05), rel=0.01)
    assert past.load[""][1][0] == 2 * 172
    assert past.load["per_node"][1][0] == 172


def test_no_data_gives_empty_histories(fleet):
    for kind in ("node_agents", "node_memory", "fleet_memory", "fleet_points", "response_p95"):
        past = history.read(kind, days=28, now=NOW)
        assert past.nodes == 0
        assert all(len(t) == 0 for t, _ in past.series.values())
