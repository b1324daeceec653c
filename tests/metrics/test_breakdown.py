from __future__ import annotations

import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import keys, query
from perfdash.metrics.batch import Batch
from perfdash.metrics.scope import QueryError, Scope

NOW = time.time()


@pytest.fixture
def stored(db):
    token = ApiToken.issue("b", ["ingest"])[0]
    series = [
        ("tool_execution_ms", "node-1", "agent-1", '{"tool":"a"}'),
        ("tool_execution_ms", "node-1", "agent-2", '{"tool":"b"}'),
        ("tool_execution_ms", "node-2", "agent-3", '{"tool":"a"}'),
    ]
    idx = np.array([0] * 10 + [1] * 20 + [2] * 30, np.int32)
    values = np.concatenate([np.full(10, 100.0), np.full(20, 200.0), np.full(30, 300.0)])
    IngestedBatch.store(token.id, Batch("b", series, idx, np.full(60, NOW - 10), values), now=NOW)


def counts(rows: dict) -> dict:
    return {k: v["count"] for k, v in rows.items()}


def test_breakdown_by_node_agent_and_tag(stored):
    assert counts(query.breakdown("tool_execution_ms", 300, "node", now=NOW)) == {"node-1": 30, "node-2": 30}
    assert counts(query.breakdown("tool_execution_ms", 300, "agent", now=NOW)) == {
        "agent-1": 10,
        "agent-2": 20,
        "agent-3": 30,
    }
    by_tool = query.breakdown("tool_execution_ms", 300, "tool", now=NOW)
    assert counts(by_tool) == {"a": 40, "b": 20}
    assert by_tool["b"]["p95"] == pytest.approx(200, rel=0.01)


def test_breakdown_within_a_scope(stored):
    assert counts(query.breakdown("tool_execution_ms", 300, "tool", Scope(node="node-1"), now=NOW)) == {
        "a": 10,
        "b": 20,
    }
    assert counts(query.breakdown("tool_execution_ms", 300, "agent", Scope(node="node-2"), now=NOW)) == {
        "agent-3": 30
    }
    assert counts(query.breakdown("tool_execution_ms", 300, "tool", Scope(agent="agent-3"), now=NOW)) == {
        "a": 30
    }


def test_breakdown_rejects_an_unknown_dimension(stored):
    with pytest.raises(QueryError):
        query.breakdown("tool_execution_ms", 300, "colour", now=NOW)


def test_a_window_s_totals_count_every_metric_in_the_scope(stored):
    elapsed = NOW - ((int(NOW) // 60 + 1) * 60 - 300)  # the window's last minute is still running
    for scope, points in [(query.FLEET, 60), (Scope(node="node-2"), 30)]:
        ids = keys.every_metric(scope)
        window = query.read_window([], 300, 60, now=NOW)
        totals = window.totals(ids)
        assert sum(n for n, _ in totals.values()) == points and window.elapsed == pytest.approx(elapsed)


@pytest.mark.parametrize("by", ["node", "agent", "tool"])
def test_a_breakdown_without_percentiles_agrees_with_the_full_one(stored, by):
    full = query.breakdown("tool_execution_ms", 300, by, now=NOW)
    cheap = query.breakdown("tool_execution_ms", 300, by, now=NOW, percentiles=False)

    assert cheap.keys() == full.keys()
    for name, values in cheap.items():
        assert "p95" not in values
        for stat in ("count", "min", "max", "avg", "sum", "rate"):
            assert values[stat] == pytest.approx(full[name][stat]), (name, stat)


def test_an_agent_seen_for_the_first_time_is_in_the_next_breakdown(stored):
    query.breakdown("tool_execution_ms", 300, "agent", now=NOW)
    token = ApiToken.issue("c", ["ingest"])[0]
    newcomer = [("tool_execution_ms", "node-3", "agent-4", '{"tool":"a"}')]
    batch = Batch("c", newcomer, np.zeros(5, np.int32), np.full(5, NOW - 10), np.full(5, 50.0))
    IngestedBatch.store(token.id, batch, now=NOW)
    assert counts(query.breakdown("tool_execution_ms", 300, "agent", now=NOW))["agent-4"] == 5
    assert counts(query.breakdown("tool_execution_ms", 300, "node", now=NOW))["node-3"] == 5
