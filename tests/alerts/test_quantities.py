"""A rule's quantities as people read and type them; here a burn-rate rule's, which read as a
multiple of the alerting rate (1.056 and 1 followed by the multiplication sign) rather than as
bare numbers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from perfdash.alerts import engine
from perfdash.alerts.models import AlertRule
from perfdash.alerts.quantities import BURN, TIMES, measured, shown, threshold_kind
from perfdash.dashboard import panels
from perfdash.lib import units
from tests.detect.conftest import seeded  # noqa: F401 (the fixture)
from tests.detect.test_slos import DAY, NOW, responses

BURN_RULE = SimpleNamespace(kind="burn", metric="agent_response_ms", statistic="p95")


def test_a_burn_rate_reads_as_a_multiple_of_the_alerting_rate():
    assert measured(BURN_RULE, 1.0564) == f"1.056{TIMES}"
    assert shown(BURN_RULE, 1.0) == f"1{TIMES}"
    assert shown(BURN_RULE, 0.25) == f"0.25{TIMES}"


@pytest.mark.parametrize("typed", ["1.5", f"1.5{TIMES}", f"1.5 {TIMES}", "1.5x", "1.5 X"])
def test_a_burn_rate_is_typed_with_or_without_its_sign(typed):
    assert units.parse(typed, threshold_kind("burn", "agent_response_ms", "p95")) == 1.5


def test_a_burn_rate_shown_reads_back_as_itself():
    for value in (1.0, 14.4, 0.001):
        assert units.parse(shown(BURN_RULE, value), BURN) == value
    with pytest.raises(ValueError, match="a burn rate"):
        units.parse("2 ms", BURN)


def test_other_rules_keep_their_units():
    latency = SimpleNamespace(kind="threshold", metric="agent_response_ms", statistic="p95")
    deploy = SimpleNamespace(kind="deploy", metric="agent_response_ms", statistic="p95")
    outlier = SimpleNamespace(kind="outlier", metric="agent_response_ms", statistic="p95")
    assert (
        measured(latency, 2000.0) == "2 s"
        and shown(deploy, 0.1) == "10 %"
        and shown(outlier, 5.0) == "5 MADs"
    )


@pytest.mark.usefixtures("seeded")
def test_the_firing_alerts_table_shows_a_burn_as_a_multiple(db):
    responses(4 * DAY, 40_000, 0.07)  # 1.4x the budget, for days: the ticket fires
    AlertRule.objects.exclude(kind="burn").update(enabled=False)
    engine.evaluate(now=NOW)
    [row] = [r for r in panels.firing_alerts(panels.View()) if r["rule"].endswith("(ticket)")]
    assert row["shown"]["threshold"] == f"1{TIMES}"
    assert row["shown"]["value"].endswith(TIMES) and float(row["shown"]["value"][:-1]) > 1
