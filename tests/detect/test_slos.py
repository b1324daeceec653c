"""SLOs on histories with a known answer: the attainment and budget of a known share of slow
points, a fast burn that pages, a slow burn that opens a ticket and does not page, a ratio of
two counters, and the read API on the real database."""

from __future__ import annotations

import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.detect import slo
from perfdash.detect.models import SLO
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

NOW = time.time()
HOUR, DAY = 3600, 86400


def store(metric: str, ts: np.ndarray, values: np.ndarray, node: str = "node-1") -> None:
    token = ApiToken.issue("t", ["ingest"])[0]
    agents = 4
    series = [(metric, node, f"agent-{a}", "{}") for a in range(agents)]
    idx = (np.arange(len(ts)) % agents).astype(np.int32)
    assert IngestedBatch.store(
        token.id, Batch(f"b-{metric}-{node}-{len(ts)}", series, idx, ts, values), now=NOW
    )


def responses(seconds: float, n: int, slow_share: float, offset: float = 60) -> None:
    """n responses spread over the `seconds` before NOW - offset, `slow_share` of them 3 s
    (the SLO's threshold is 2 s), the rest 0.5-1.5 s."""
    rng = np.random.default_rng(n)
    ts = NOW - offset - rng.uniform(0, seconds, n)
    values = np.where(rng.random(n) < slow_share, 3000.0, rng.uniform(500, 1500, n))
    store("agent_response_ms", ts, np.round(values, 2))


def latency_slo(**extra) -> SLO:
    fields = dict(name="95 % within 2 s", metric="agent_response_ms", threshold=2000, objective=0.95)
    s = SLO(**(fields | extra))
    s.full_clean()
    s.save()
    return s


def test_attainment_budget_and_burn_of_a_known_share_of_slow_points(db):
    SLO.objects.all().delete()
    responses(2 * DAY, 20_000, 0.03)
    got = slo.status(latency_slo(), NOW, detail=True)
    assert got["attainment"] == pytest.approx(0.97, abs=0.004)
    assert got["budget_left"] == pytest.approx(1 - 0.03 / 0.05, abs=0.08)
    for window in ("1h", "6h", "3d"):
        assert got["burn_rates"][window] == pytest.approx(0.6, abs=0.25), window
    assert got["alerting"] is None
    # At 0.6x, the 40 % left lasts 0.4 / 0.6 of 30 days.
    assert got["budget_left_s"] == pytest.approx(0.4 / 0.6 * 30 * DAY, rel=0.5)
    down = got["burn_down"]
    assert down["left"][0] == pytest.approx(1, abs=0.01) and down["left"][-1] == pytest.approx(
        got["budget_left"]
    )
    # From the start of the first hour with events (two days ago), not from the period's start.
    assert NOW - 2 * DAY - HOUR - 60 < down["t"][0] <= NOW - 2 * DAY and down["left"][0] == 1
    assert got["top_spender"] == {"by": "node", "name": "node-1", "share": pytest.approx(1)}


def test_a_fast_burn_pages(db):
    SLO.objects.all().delete()
    responses(2 * DAY, 20_000, 0.01)
    responses(2 * HOUR, 5000, 1.0, offset=30)  # the last two hours: all slow, 20x the budget
    got = slo.status(latency_slo(), NOW)
    assert got["burn_rates"]["5m"] > 14.4 and got["burn_rates"]["1h"] > 14.4
    assert got["alerting"] == "page"


def test_a_slow_burn_opens_a_ticket_and_does_not_page(db):
    SLO.objects.all().delete()
    responses(4 * DAY, 40_000, 0.07)  # 1.4x the budget, for days
    got = slo.status(latency_slo(), NOW)
    assert 1 < got["burn_rates"]["3d"] < 2 and 1 < got["burn_rates"]["6h"] < 2
    assert got["alerting"] == "ticket"


def test_burn_thresholds_follow_the_period():
    assert slo.burn_threshold(0.02, "1h", 30) == pytest.approx(14.4)
    assert slo.burn_threshold(0.05, "6h", 30) == pytest.approx(6)
    assert slo.burn_threshold(0.10, "3d", 30) == pytest.approx(1)
    assert slo.burn_threshold(0.02, "1h", 7) == pytest.approx(14.4 * 7 / 30)


def test_a_ratio_slo_counts_errors_over_responses(db):
    SLO.objects.all().delete()
    responses(50 * 60, 4000, 0.0)
    ts = NOW - 60 - np.random.default_rng(9).uniform(0, 50 * 60, 40)
    store("errors_total", ts, np.ones(40))  # 1 % of responses failed
    s = SLO(
        name="99.5 % without errors",
        kind="ratio",
        metric="errors_total",
        total_metric="agent_response_ms",
        objective=0.995,
    )
    s.full_clean()
    s.save()
    got = slo.status(s, NOW)
    assert got["attainment"] == pytest.approx(0.99, abs=1e-9)
    assert got["burn_rates"]["1h"] == pytest.approx(2.0, abs=1e-6)


def test_an_slo_without_data_says_so(db):
    SLO.objects.all().delete()
    got = slo.status(latency_slo(metric="memory_op_ms", threshold=100), NOW, detail=True)
    assert got["attainment"] is None and got["budget_left"] is None and got["alerting"] is None
    assert all(v is None for v in got["burn_rates"].values())


def test_the_seeded_slos_and_the_api(client, read_token, seeded):
    names = set(SLO.objects.values_list("name", flat=True))
    assert {
        "95 % of responses within 2 s",
        "90 % of tool calls within 5 s",
        "99 % of memory operations within 100 ms",
    } <= names
    responses(HOUR, 2000, 0.5, offset=30)
    r = client.get("/api/v1/slos", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert r.status_code == 200
    by_name = {s["name"]: s for s in r.json()}
    response = by_name["95 % of responses within 2 s"]
    assert set(response) >= {
        "id",
        "name",
        "metric",
        "objective",
        "period",
        "attainment",
        "budget_left",
        "burn_rates",
        "alerting",
    }
    assert set(response["burn_rates"]) == {"5m", "30m", "1h", "6h", "3d"}
    assert response["alerting"] == "page" and response["period"] == "30d"
    assert client.get("/api/v1/slos").status_code == 401


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (dict(objective=1.0), "objective"),
        (dict(threshold=None), "threshold"),
        (dict(kind="ratio", total_metric=""), "total_metric"),
        (dict(period_days=120), "period_days"),
    ],
)
def test_an_slo_that_cannot_be_computed_is_refused(db, fields, error):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        latency_slo(name="bad", **fields)
    assert error in refused.value.message_dict


def test_a_pair_alerts_only_while_both_its_windows_burn_and_stops_when_the_short_one_recovers():
    burning = {"5m": 20.0, "30m": 18.0, "1h": 16.0, "6h": 7.0, "3d": 2.0}
    # The worse of the two paging pairs: 1 h and 5 min over 14.4x, 6 h and 30 min over 6x.
    assert slo.burn_over(burning, 30, "page") == pytest.approx(max(16 / 14.4, 7 / 6))
    assert slo.burn_over(burning, 30, "ticket") == pytest.approx(2.0)
    recovered = burning | {"5m": 3.0, "30m": 3.0}
    assert slo.burn_over(recovered, 30, "page") < 1 < slo.burn_over(recovered | {"30m": 9.0}, 30, "page")
    assert slo.burn_over(dict.fromkeys(burning), 30, "page") is None
