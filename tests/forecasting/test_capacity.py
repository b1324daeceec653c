"""Capacity planning end to end: rollups -> refit -> stored forecasts -> assessment."""

from __future__ import annotations

import math
import signal

import numpy as np
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from perfdash.forecasting import capacity
from perfdash.forecasting.models import CapacityForecast, CapacityTarget
from tests.conftest import start_worker, wait_until
from tests.forecasting.conftest import HOUR, NOW


def rows(kind: str) -> dict[str, CapacityForecast]:
    return {r.subject: r for r in CapacityForecast.objects.filter(target__kind=kind)}


def days_from_now(at) -> float:
    return (at.timestamp() - NOW) / 86400


@pytest.fixture
def growing(fleet):
    """16 days in which node-1 gains an agent an hour from 500; node-2 holds 300."""
    fleet.hourly("active_agents", "node-1", "collector", 384, lambda ago: 500 + (384 - ago))
    fleet.hourly("active_agents", "node-2", "collector", 384, lambda ago: 300 + 0 * ago)
    fleet.store()
    return fleet


def test_a_node_on_a_linear_trend_reaches_its_limit_when_expected(growing):
    assert capacity.refit(now=NOW) > 0

    node = rows("node_agents")["node-1"]
    # The last whole hour holds 883 agents; 117 more at 1 an hour is 117 hours after it.
    expected = (NOW - 1800 - HOUR + 117 * HOUR - NOW) / 86400
    assert node.ok and node.limit == 1000
    assert days_from_now(node.crossing_at) == pytest.approx(expected, abs=0.15)
    assert node.crossing_earliest <= node.crossing_at <= node.crossing_latest
    assert rows("node_agents")["node-2"].crossing_at is None  # flat at 300: not within 30 days


def test_the_fleet_row_recommends_nodes_for_the_headroom(growing):
    capacity.refit(now=NOW)

    fleet_row = rows("node_agents")[""]
    peak = max(fleet_row.bands["upper80"])
    assert fleet_row.current_nodes == 2 and fleet_row.limit == 2000
    # 1183 agents now, about 1900 in 30 days: at 800 usable per node that takes 3 nodes.
    assert fleet_row.recommended_nodes == math.ceil(peak / 800) >= 3


def test_extra_growth_brings_the_crossing_forward_and_raises_the_recommendation(growing):
    capacity.refit(now=NOW)
    target = CapacityTarget.objects.get(kind="node_agents")
    node, fleet_row = rows("node_agents")["node-1"], rows("node_agents")[""]

    plain = capacity.assess(node, target, NOW)
    faster = capacity.assess(node, target, NOW, growth=0.10)

    assert faster.crossing.at < plain.crossing.at
    assert capacity.assess(fleet_row, target, NOW, growth=0.10).recommended > fleet_row.recommended_nodes


def test_refit_replaces_forecasts_and_drops_those_of_disabled_targets(growing):
    capacity.refit(now=NOW)
    first = {r.id for r in CapacityForecast.objects.all()}
    CapacityTarget.objects.filter(kind="node_memory").update(enabled=False)

    capacity.refit(now=NOW + 60)

    assert not first & {r.id for r in CapacityForecast.objects.all()}
    assert not CapacityForecast.objects.filter(target__kind="node_memory").exists()
    assert set(rows("node_agents")) == {"", "node-1", "node-2"}


def test_a_refit_while_another_runs_does_nothing(growing):
    db = settings.DATABASES["default"]
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [capacity._LOCK_ID])
        assert capacity.refit(now=NOW) is None
        other.execute("SELECT pg_advisory_unlock(%s)", [capacity._LOCK_ID])
    assert capacity.refit(now=NOW) > 0


def test_a_short_history_is_not_forecast_further_ahead_than_twice_its_length(fleet):
    fleet.hourly("active_agents", "node-1", "collector", 24, lambda ago: 500 + 2 * (24 - ago))
    fleet.store()

    capacity.refit(now=NOW)

    node = rows("node_agents")["node-1"]
    # 23 hours from the first point to the last, twice, in 10-minute steps (under two days).
    assert node.step_s == 600 and len(node.bands["t"]) == 46 * 6
    assert "horizon limited to twice the history (46 h)" in node.notes[-1]


def test_without_data_each_target_says_so(fleet):
    capacity.refit(now=NOW)

    for kind in ("node_agents", "node_memory", "fleet_memory", "fleet_points", "response_p95"):
        row = rows(kind)[""]
        assert not row.ok and "not enough data" in row.reason
        assert row.crossing_at is None and row.recommended_nodes is None


@pytest.fixture
def loaded(fleet):
    """Agents per node swing daily between 200 and 600; response p95 = 200 ms + 2 ms per agent."""
    hours = 96
    agents = lambda ago: 400 + 200 * np.sin(2 * np.pi * ago / 24)  # noqa: E731
    for node in ("node-1", "node-2"):
        fleet.hourly("active_agents", node, "collector", hours, agents)
    ago = np.arange(hours, 0, -1)
    ts = NOW - 1800 - ago * HOUR + 600
    fleet.add("agent_response_ms", "node-1", "a1", np.repeat(ts, 20), np.repeat(200 + 2 * agents(ago), 20))
    fleet.store()
    return fleet


def test_response_p95_that_rises_with_load_sizes_the_fleet(loaded):
    capacity.refit(now=NOW)

    row = rows("response_p95")[""]
    fit = row.sizing["fit"]
    assert fit["slope"] == pytest.approx(2, rel=0.02) and fit["intercept"] == pytest.approx(200, abs=15)
    # Under 1600 ms (2 s less 20 % headroom) a node takes (1600 - 200) / 2 = 700 agents.
    outlook = capacity.assess(row, CapacityTarget.objects.get(kind="response_p95"), NOW)
    assert "at most 70" in outlook.explain
    assert row.recommended_nodes == math.ceil(
        row.sizing["peak_agents"] / ((1600 - fit["intercept"]) / fit["slope"])
    )


def test_response_p95_that_ignores_load_keeps_the_node_count(fleet):
    rng = np.random.default_rng(3)
    for node in ("node-1", "node-2", "node-3"):
        fleet.hourly("active_agents", node, "collector", 96, lambda ago: 400 + 200 * np.sin(ago / 4))
    ts = NOW - 1800 - np.arange(96, 0, -1) * HOUR + 600
    fleet.add("agent_response_ms", "node-1", "a1", np.repeat(ts, 20), np.repeat(rng.normal(900, 50, 96), 20))
    fleet.store()

    capacity.refit(now=NOW)

    row = rows("response_p95")[""]
    assert row.recommended_nodes == 3
    outlook = capacity.assess(row, CapacityTarget.objects.get(kind="response_p95"), NOW)
    assert "does not rise with agents per node" in outlook.explain


@pytest.mark.slow
def test_the_refit_task_runs_on_a_real_worker(growing, redis_queue, tmp_path):
    from perfdash.forecasting.tasks import refit

    worker = start_worker(tmp_path, "forecast", queues="forecast")
    try:
        refit.delay()
        wait_until(lambda: rows("node_agents").get("node-1"), 60, "the worker's forecasts")
    finally:
        worker.kill(signal.SIGTERM)
    assert rows("node_agents")["node-1"].model
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM forecasting_capacityforecast WHERE ok")
        assert cur.fetchone()[0] >= 3
