"""GET /api/v1/compare: parameters, errors and the answer's shape, on the real database."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.compare.conftest import DEPLOY

A_B = "metric=agent_response_ms&window=1h&a.tag.version=1.2.0&b.tag.version=1.3.0"


def get(client, query: str, token: str | None = None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(f"/api/v1/compare?{query}", **extra)


def test_two_versions_compared_give_each_ones_statistics_the_differences_and_a_verdict(
    client, read_token, fleet
):
    r = get(client, A_B, read_token)
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {
        *("metric", "a", "b", "diff", "verdict", "stat", "method", "notes"),
        *("summary", "shown", "labels", "ranges"),
    }
    assert body["metric"] == "agent_response_ms" and body["stat"] == "p95"
    stats = {"mean", "p50", "p90", "p95", "p99"}
    for name in ("a", "b"):
        assert set(body[name]) == {"count", *stats}
        assert all(body[name][s]["lo"] < body[name][s]["value"] < body[name][s]["hi"] for s in stats)
    assert body["a"]["count"] + body["b"]["count"] == 8000
    assert set(body["diff"]) == stats
    p95 = body["diff"]["p95"]
    assert p95["lo"] < 0.3 < p95["hi"] and p95["verdict"] == "slower" == body["verdict"]
    assert "bootstrap" in body["method"]
    assert any("0.5 %" in n for n in body["notes"])


def test_the_verdict_is_said_in_words_naming_what_differs(client, read_token, fleet):
    body = get(client, A_B, read_token).json()
    assert body["labels"] == {"a": "version 1.2.0", "b": "version 1.3.0"}
    p95 = body["diff"]["p95"]
    said = body["summary"]
    assert said.startswith("version 1.3.0 is slower than version 1.2.0: p95 ")
    assert (
        f"+{p95['rel'] * 100:.0f} % (95 % interval +{p95['lo'] * 100:.0f} % to +{p95['hi'] * 100:.0f} %)"
        in said
    )
    assert " s vs " in said  # values above a second are given in seconds


def test_histograms_bin_both_cohorts_alike_on_a_log_scale(client, read_token, fleet):
    body = get(client, A_B + "&histograms=1", read_token).json()
    a, b = body["histograms"]["a"], body["histograms"]["b"]
    assert a["lo"] == b["lo"] and a["hi"] == b["hi"] and len(a["lo"]) <= 61
    assert sum(a["count"]) == body["a"]["count"] and sum(b["count"]) == body["b"]["count"]
    widths = [h / lo for lo, h in zip(a["lo"], a["hi"], strict=True)]
    assert max(widths) / min(widths) == pytest.approx(1)  # equal widths on a log axis
    # Version 1.3.0 is 30 % slower: its median bin lies above 1.2.0's.
    median = [
        next(i for i, c in enumerate(h["count"]) if sum(h["count"][: i + 1]) * 2 >= sum(h["count"]))
        for h in (a, b)
    ]
    assert median[1] > median[0]
    assert "histograms" not in get(client, A_B, read_token).json()


def test_variants_on_the_same_agents_are_compared_agent_by_agent(client, read_token, fleet):
    query = "metric=agent_response_ms&window=1h&a.tag.variant=a&b.tag.variant=b"
    body = get(client, query, read_token).json()
    assert all(abs(d["rel"]) < 0.1 for d in body["diff"].values())  # the same traffic, split in two
    assert any("share 10 agents" in n for n in body["notes"])


def test_a_stat_narrows_the_answer_and_decides_the_verdict(client, read_token, fleet):
    body = get(client, A_B + "&stat=p50&min_effect=50%", read_token).json()
    assert set(body["a"]) == {"count", "p50"} and set(body["diff"]) == {"p50"}
    assert body["stat"] == "p50" and body["verdict"] == "no_change"  # +30 % is under 50 %


def test_the_time_before_a_deploy_against_the_time_after(client, read_token, fleet):
    query = f"metric=llm_call_ms&window=20m&a.to={int(DEPLOY)}&b.from={int(DEPLOY) + 60}"
    body = get(client, query, read_token).json()
    assert body["verdict"] == "slower", body
    assert any("cover different times" in n for n in body["notes"])


def test_filters_without_a_prefix_apply_to_both_cohorts(client, read_token, fleet):
    body = get(client, A_B + "&node=node-0", read_token).json()
    assert body["a"]["count"] + body["b"]["count"] < 5000
    mine = get(client, A_B + "&node=node-0&b.node=node-1", read_token).json()
    assert mine["a"]["count"] == body["a"]["count"] and mine["b"]["count"] != body["b"]["count"]


def test_rfc_3339_times_work_like_unix_seconds(client, read_token, fleet):
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(int(DEPLOY), UTC).isoformat().replace("+00:00", "Z")
    unix = get(client, f"metric=llm_call_ms&window=20m&a.to={int(DEPLOY)}&b.from={int(DEPLOY)}", read_token)
    rfc = get(client, f"metric=llm_call_ms&window=20m&a.to={iso}&b.from={iso}", read_token)
    assert rfc.status_code == 200 and rfc.json()["a"]["count"] == unix.json()["a"]["count"]


def test_a_cohort_with_too_few_points_is_insufficient_data(client, read_token, fleet, settings):
    settings.COMPARE_MIN_COUNT = 5000
    body = get(client, A_B, read_token).json()
    assert body["verdict"] == "insufficient_data"
    assert body["a"]["p95"] is None and body["diff"]["p95"]["rel"] is None
    assert any("fewer than the 5000" in n for n in body["notes"])


def test_a_tag_value_never_seen_is_insufficient_data_not_an_error(client, read_token, fleet):
    body = get(client, "metric=agent_response_ms&a.tag.version=1.2.0&b.tag.version=9.9", read_token).json()
    assert body["verdict"] == "insufficient_data" and body["b"]["count"] == 0


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("window=1h&a.tag.version=1&b.tag.version=2", "metric"),
        (A_B + "&colour=red", "colour"),
        (A_B + "&a.colour=red", "a.colour"),
        (A_B + "&a.metric=llm_call_ms", "a.metric"),
        ("metric=agent_response_ms&window=1y&a.tag.version=1&b.tag.version=2", "window"),
        ("metric=agent_response_ms&a.window=0m&b.tag.version=2", "a.window"),
        ("metric=agent_response_ms&a.from=yesterday&b.tag.version=2", "a.from"),
        ("metric=agent_response_ms&a.from=2026-12-01T10:00:00&b.tag.version=2", "a.from"),
        ("metric=agent_response_ms&a.from=4000000000&b.tag.version=2", "a.from"),
        ("metric=agent_response_ms&a.from=1000&b.tag.version=2", "a.from"),
        ("metric=agent_response_ms&a.from=1800000000&a.to=1700000000&b.tag.version=2", "a.to"),
        ("metric=agent_response_ms&a.tag.version=1&a.tag.tool=x&b.tag.version=2", "a.tag.tool"),
        ("metric=agent_response_ms&a.tag.user=bob&b.tag.version=2", "a.tag.user"),
        ("metric=agent_response_ms&a.node=%00&b.tag.version=2", "a.node"),
        ("metric=agent_response_ms&window=1h", "b"),
        ("metric=agent_response_ms&a.node=n&b.node=n", "b"),
        (A_B + "&stat=p42", "stat"),
        ("metric=errors_total&a.tag.version=1&b.tag.version=2&stat=p95", "stat"),
        (A_B + "&min_effect=-1", "min_effect"),
        (A_B + "&min_effect=lots", "min_effect"),
        (A_B + "&confidence=1", "confidence"),
    ],
)
def test_a_bad_parameter_gets_400_naming_it(client, read_token, fleet, query, param):
    r = get(client, query, read_token)
    assert r.status_code == 400, r.content
    assert r.json()["param"] == param and r.json()["error"]


def test_an_unknown_metric_gets_404(client, read_token, fleet):
    r = get(client, "metric=no_such_ms&a.tag.version=1.2.0&b.tag.version=1.3.0", read_token)
    assert r.status_code == 404 and r.json()["param"] == "metric"


def test_a_counter_compares_its_rate(client, read_token, fleet):
    body = get(client, "metric=errors_total&a.tag.version=1.2.0&b.tag.version=1.3.0", read_token).json()
    assert body["stat"] == "rate" and set(body["diff"]) == {"rate"}
    assert body["verdict"] == "insufficient_data"  # no errors stored


def test_comparing_needs_a_read_token_or_a_session(client, ingest_token, fleet):
    assert get(client, A_B).status_code == 401
    assert get(client, A_B, ingest_token).status_code == 401
    client.force_login(User.objects.create_user("viewer", password="x" * 12))
    assert get(client, A_B).status_code == 200


def test_comparing_is_get_only(client, read_token, fleet):
    r = client.post(f"/api/v1/compare?{A_B}", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert r.status_code == 405


BEFORE_AFTER = f"metric=tool_execution_ms&window=20m&a.to={int(DEPLOY)}&b.from={int(DEPLOY) + 60}"


def test_a_breakdown_compares_each_tool_largest_effect_first(client, read_token, tools):
    body = get(client, BEFORE_AFTER + "&by=tool", read_token).json()
    rows = body["breakdown"]["rows"]
    assert [r["value"] for r in rows] == ["search", "fetch", "rare"]
    assert [r["verdict"] for r in rows] == ["slower", "no_change", "insufficient_data"]
    assert rows[0]["diff"]["p95"]["lo"] < 0.4 < rows[0]["diff"]["p95"]["hi"]
    assert rows[0]["summary"].endswith(")") and "(search) is slower than" in rows[0]["summary"]
    assert body["breakdown"]["left_out"] == 0


def test_a_breakdown_of_cohorts_that_filter_on_a_tag_is_refused(client, read_token, fleet):
    r = get(client, A_B + "&by=tool", read_token)
    assert r.status_code == 400 and r.json()["param"] == "by"
    assert get(client, BEFORE_AFTER + "&by=colour", read_token).json()["param"] == "by"


def test_an_agent_against_the_other_agents_of_its_node(client, read_token, fleet):
    query = "metric=agent_response_ms&window=1h&a.node=node-1&a.except_agent=agent-7&b.agent=agent-7"
    body = get(client, query, read_token).json()
    assert body["labels"] == {"a": "the other agents of node node-1", "b": "agent agent-7"}
    # node-1 holds agents 1, 3, 5, 7 and 9: 1.2.0 on 1 and 3, 1.3.0 (30 % slower) on the rest.
    whole_node = get(client, "metric=agent_response_ms&window=1h&a.node=node-1&b.agent=agent-7", read_token)
    assert body["a"]["count"] + body["b"]["count"] == whole_node.json()["a"]["count"]
    assert any("run on different agents (4 and 1)" in n for n in body["notes"])


@pytest.mark.parametrize(
    "query",
    [
        "metric=agent_response_ms&a.except_agent=x&b.agent=x",
        "metric=agent_response_ms&a.agent=y&a.except_agent=x&b.agent=x",
    ],
)
def test_leaving_an_agent_out_needs_a_node(client, read_token, fleet, query):
    r = get(client, query, read_token)
    assert r.status_code == 400 and r.json()["param"] == "a.except_agent"
