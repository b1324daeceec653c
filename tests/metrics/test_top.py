"""Breakdowns as pages read them: the first N groups, and every other group merged into one."""

from __future__ import annotations

import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import query
from perfdash.metrics.batch import Batch
from perfdash.metrics.scope import QueryError, Scope

NOW = time.time()
AGENTS = 50


def agent(i: int) -> str:
    return f"agent-{i:02d}"


@pytest.fixture
def fleet(db) -> dict[str, np.ndarray]:
    """50 agents on two nodes, agent i with i + 1 calls of tool-i (so counts rank them), each
    with values of its own. Returns every agent's values."""
    token = ApiToken.issue("t", ["ingest"])[0]
    series = [
        ("tool_execution_ms", f"node-{i % 2}", agent(i), f'{{"tool":"tool-{i:02d}"}}') for i in range(AGENTS)
    ]
    values = {agent(i): 10.0 * (i + 1) + np.arange(i + 1) * 7.0 for i in range(AGENTS)}
    idx = np.repeat(np.arange(AGENTS, dtype=np.int32), [i + 1 for i in range(AGENTS)])
    column = np.concatenate([values[agent(i)] for i in range(AGENTS)])
    IngestedBatch.store(token.id, Batch("b", series, idx, np.full(len(idx), NOW - 10), column), now=NOW)
    return values


def test_it_returns_the_first_n_agents_by_count_and_merges_the_rest(fleet):
    top = query.top("tool_execution_ms", 300, "agent", 10, now=NOW)

    assert list(top.rows) == [agent(i) for i in range(49, 39, -1)]  # most calls first
    assert [r["count"] for r in top.rows.values()] == list(range(50, 40, -1))
    assert top.folded == 40
    assert top.others["count"] == sum(range(1, 41))  # the 40 agents with 1 to 40 calls


def test_the_others_row_has_the_percentiles_of_all_its_points(fleet):
    top = query.top("tool_execution_ms", 300, "agent", 10, now=NOW)

    rest = np.concatenate([fleet[agent(i)] for i in range(40)])
    assert top.others["min"] == rest.min() and top.others["max"] == rest.max()
    assert top.others["sum"] == pytest.approx(rest.sum())
    for p, q in query.PERCENTILES.items():
        assert top.others[p] == pytest.approx(np.percentile(rest, 100 * q), rel=0.005), p


def test_the_first_rows_are_as_precise_as_the_full_breakdown(fleet):
    full = query.breakdown("tool_execution_ms", 300, "agent", now=NOW)
    top = query.top("tool_execution_ms", 300, "agent", 10, now=NOW)

    for name, values in top.rows.items():
        assert values == full[name]


def test_it_ranks_by_another_statistic_without_percentiles(fleet):
    top = query.top("tool_execution_ms", 300, "tool", 3, now=NOW, percentiles=False, rank="max")

    assert list(top.rows) == ["tool-49", "tool-48", "tool-47"]
    assert "p95" not in top.rows["tool-49"] and top.rows["tool-49"]["max"] == fleet[agent(49)].max()
    assert top.folded == 47 and top.others["max"] == fleet[agent(46)].max()
    assert top.folded_sum == pytest.approx(sum(fleet[agent(i)].max() for i in range(47)))


def test_ties_are_ranked_by_name(fleet):
    token = ApiToken.objects.get()
    series = [("agent_response_ms", "node-0", name, "{}") for name in ("c", "a", "b")]
    idx = np.repeat(np.arange(3, dtype=np.int32), 3)
    IngestedBatch.store(token.id, Batch("tie", series, idx, np.full(9, NOW - 10), np.ones(9)), now=NOW)

    top = query.top("agent_response_ms", 300, "agent", 2, now=NOW)
    assert list(top.rows) == ["a", "b"] and top.folded == 1 and top.others["count"] == 3


def test_every_group_s_value_can_come_along(fleet):
    top = query.top(
        "tool_execution_ms", 300, "agent", 5, now=NOW, percentiles=False, rank="max", every_value=True
    )
    assert sorted(top.values) == sorted(v.max() for v in fleet.values())


def test_fewer_groups_than_n_have_no_others_row(fleet):
    top = query.top("tool_execution_ms", 300, "agent", 5, Scope(node="node-0"), now=NOW)
    assert len(top.rows) == 5 and top.folded == 20

    within = query.top("tool_execution_ms", 300, "tool", 10, Scope(agent=agent(7)), now=NOW)
    assert list(within.rows) == ["tool-07"] and within.others is None and within.folded == 0


def test_a_read_can_be_limited_to_some_names(fleet):
    rows = query.breakdown("tool_execution_ms", 300, "agent", now=NOW, names=[agent(1), agent(2), "nobody"])
    assert {k: v["count"] for k, v in rows.items()} == {agent(1): 2, agent(2): 3}


def test_it_refuses_a_rank_postgresql_cannot_compute(fleet):
    with pytest.raises(QueryError):
        query.top("tool_execution_ms", 300, "agent", 10, now=NOW, rank="p95")


@pytest.mark.parametrize("by", ["agent", "node"])
def test_the_others_are_the_same_read_as_the_whole_less_the_first_or_merged_from_each(fleet, by, monkeypatch):
    # Agents and nodes split the fleet's points: the others' sketch is the fleet's less the
    # first groups' (a read of a few keys), which must equal merging every other group's rows.
    assert query._partitioned("tool_execution_ms", by, query.FLEET, None)  # the fleet's key
    less = query.top("tool_execution_ms", 300, by, 1, now=NOW)
    monkeypatch.setattr(query, "_partitioned", lambda *args: [])
    merged = query.top("tool_execution_ms", 300, by, 1, now=NOW)
    assert less.rows == merged.rows and less.folded == merged.folded
    assert less.others == pytest.approx(merged.others, rel=1e-12)
