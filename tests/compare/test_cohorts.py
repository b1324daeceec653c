"""Cohorts read from the rollups as cells, and compared: the real PostgreSQL."""

from __future__ import annotations

import pytest

from perfdash.compare import cohorts
from perfdash.compare.cohorts import Cohort, Plan, compare_cohorts, plan, read
from perfdash.compare.compare import SLOWER, Options
from perfdash.lib.durations import DAY_S, HOUR_S
from perfdash.metrics import compact, query
from perfdash.metrics.scope import Scope, UnknownMetric
from tests.compare.conftest import DEPLOY, NOW
from tests.test_layering import package_edges

START, END = query.window(3600, NOW)
V12, V13 = Scope(tag_key="version", tag_value="1.2.0"), Scope(tag_key="version", tag_value="1.3.0")


def cohort(scope: Scope, start: int = START, end: int = END) -> Cohort:
    return Cohort(scope, start, end)


def test_a_cohort_is_read_as_cells_of_its_agents_and_five_minute_blocks(fleet):
    how = plan(cohort(V12), cohort(V13), NOW)
    assert how == Plan(slot_s=300, hourly=False)
    cells = read("agent_response_ms", cohort(V12), how, NOW)
    assert cells.level == "agent" and cells.units == tuple(f"agent-{a}" for a in range(5))
    assert 3500 < cells.count < 4500
    assert 45 <= cells.minutes <= 51
    assert len(cells.slots) in (12, 13)  # blocks are aligned to the clock, not to the window
    assert cells.seconds.sum() == pytest.approx(min(END, NOW) - START)


def test_a_cohort_with_more_agent_rows_than_the_budget_allows_is_read_by_node(fleet, monkeypatch):
    monkeypatch.setattr(cohorts, "ROW_BUDGET", 100)
    how = plan(cohort(V12), cohort(V13), NOW)
    by_agent = read("agent_response_ms", cohort(Scope()), how, NOW)
    assert by_agent.level == "node" and by_agent.units == ("node-0", "node-1")
    assert by_agent.agents == 10 and by_agent.count == 8000


def test_an_agents_cohort_is_that_agent(fleet):
    cells = read("agent_response_ms", cohort(Scope(agent="agent-3")), Plan(300, False), NOW)
    assert cells.units == ("agent-3",) and 500 < cells.count < 1100


def test_compacted_rows_read_as_the_deltas_did(fleet):
    how = Plan(300, False)
    before = read("agent_response_ms", cohort(V13), how, NOW)
    while compact.compact():
        pass
    after = read("agent_response_ms", cohort(V13), how, NOW)
    assert after.count == before.count and after.minutes == before.minutes
    assert sorted(after.groups.label) == sorted(before.groups.label)


@pytest.mark.parametrize(
    ("span_s", "expected"),
    [
        (600, Plan(300, False)),
        (3600, Plan(300, False)),
        (12 * HOUR_S, Plan(900, False)),
        (24 * HOUR_S, Plan(3600, True)),
        (7 * DAY_S, Plan(4 * HOUR_S, True)),
    ],
)
def test_longer_ranges_get_longer_blocks_and_over_12_hours_hour_rows(span_s, expected):
    a = Cohort(Scope(), int(NOW) - span_s, int(NOW))
    assert plan(a, a, NOW) == expected


def test_a_range_older_than_the_minute_rollups_is_read_by_the_hour(settings):
    settings.MINUTE_ROLLUP_RETENTION_DAYS = 3
    old = Cohort(Scope(), int(NOW) - 5 * DAY_S, int(NOW) - 5 * DAY_S + HOUR_S)
    how = plan(old, old, NOW)
    assert how.hourly and cohorts.aligned(old, how, NOW).start % HOUR_S == 0


def test_two_versions_on_agents_of_their_own_are_compared(fleet):
    result = compare_cohorts("agent_response_ms", cohort(V12), cohort(V13), Options(), now=NOW)
    assert result.verdict == SLOWER
    assert result.diff["p95"].lo < 0.3 < result.diff["p95"].hi
    assert any("different agents (5 and 5)" in n for n in result.notes)
    assert any(n.startswith("a: ") and " to " in n for n in result.notes)


def test_the_hour_before_a_deploy_is_compared_with_the_time_after(fleet):
    before = cohort(Scope(), START, int(DEPLOY) // 60 * 60)
    after = cohort(Scope(), int(DEPLOY) // 60 * 60 + 60, END)
    result = compare_cohorts("llm_call_ms", before, after, Options(), now=NOW)
    assert result.verdict == SLOWER
    assert result.diff["p50"].lo < 0.3 < result.diff["p50"].hi
    assert any("cover different times" in n for n in result.notes)


def test_an_unknown_metric_is_refused(fleet):
    with pytest.raises(UnknownMetric):
        compare_cohorts("no_such_ms", cohort(V12), cohort(V13), Options(), now=NOW)


def test_the_comparison_imports_only_the_store_and_lib():
    assert {dst for dst, _ in package_edges()["compare"]} <= {"lib", "metrics"}
