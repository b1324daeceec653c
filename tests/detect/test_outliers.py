"""Peer outliers on histories with a known answer: one slow agent among 50 is found, none
among 50 alike; too few peers or points decide nothing; and the read API, on the real database."""

from __future__ import annotations

import numpy as np
import pytest

from perfdash.detect.outliers import Peer, judge


def alike(n: int, rng, slow: dict[int, float] | None = None) -> dict[str, Peer]:
    """n agents' p95s around 2 s (5 % apart), on two nodes; `slow` multiplies some."""
    slow = slow or {}
    return {
        f"agent-{i}": Peer(2000 * rng.lognormal(0, 0.05) * slow.get(i, 1.0), 500, f"node-{i % 2}")
        for i in range(n)
    }


def test_one_slow_agent_among_50_is_the_only_outlier():
    rng = np.random.default_rng(1)
    judged = judge(alike(50, rng, {17: 1.4}), tolerance=5, min_peers=5, min_count=20, by_node=True)
    outliers = [j for j in judged if j.outlier()]
    assert [j.agent for j in outliers] == ["agent-17"]
    j = outliers[0]
    assert j.mads > 5 and j.peer_band[0] < j.peer_median < j.peer_band[1] < j.value
    assert j.peer_median == pytest.approx(2000, rel=0.05)


@pytest.mark.parametrize("seed", range(20))
def test_no_agent_among_50_alike_is_an_outlier(seed):
    judged = judge(alike(50, np.random.default_rng(seed)), 5, 5, 20, by_node=False)
    assert len(judged) == 50 and not any(j.outlier() for j in judged)


def test_peers_that_all_report_the_same_value_do_not_make_a_trivial_difference_extreme():
    values = {f"a{i}": Peer(1000.0, 100, "n") for i in range(10)} | {"a10": Peer(1010.0, 100, "n")}
    assert not any(j.outlier() for j in judge(values, 5, 5, 20, by_node=True))
    values["a10"] = Peer(1110.0, 100, "n")  # 11 %: more than five times the 2 % floor
    assert [j.agent for j in judge(values, 5, 5, 20, by_node=True) if j.outlier()] == ["a10"]


def test_too_few_peers_or_points_decide_nothing():
    rng = np.random.default_rng(2)
    few = alike(4, rng, {0: 3.0})
    judged = judge(few, 5, 5, 20, by_node=False)
    assert all(j.peer_median is None and not j.outlier() for j in judged)
    thin = {a: p._replace(count=5) for a, p in alike(50, rng, {3: 3.0}).items()}
    assert judge(thin, 5, 5, 20, by_node=False) == []


def test_an_agent_with_fewer_points_than_its_peers_is_judged_against_its_own_wider_spread():
    values = alike(50, np.random.default_rng(4))
    median = float(np.median([p.value for p in values.values()]))
    values["agent-7"] = Peer(median * 1.45, 125, "node-1")  # a quarter of its peers' 500 points
    judged = {j.agent: j for j in judge(values, 5, 5, 20, by_node=False)}
    quiet = judged["agent-7"]
    assert not quiet.outlier()  # its spread is twice the peers': 1.45x is its own noise
    assert quiet.peer_band[1] - quiet.peer_median == pytest.approx(
        2 * (judged["agent-1"].peer_band[1] - judged["agent-1"].peer_median)
    )
    values["agent-7"] = Peer(median * 2.5, 125, "node-1")  # far beyond even that
    assert [j.agent for j in judge(values, 5, 5, 20, by_node=False) if j.outlier()] == ["agent-7"]
    values["agent-7"] = Peer(median * 1.45, 2000, "node-1")  # more points than its peers: as before
    assert [j.agent for j in judge(values, 5, 5, 20, by_node=False) if j.outlier()] == ["agent-7"]


def test_only_the_high_side_counts():
    values = alike(50, np.random.default_rng(3), {5: 0.5})
    assert not any(j.outlier() for j in judge(values, 5, 5, 20, by_node=False))


# --- the read API ---------------------------------------------------------------------------


def get(client, token: str, query: str):
    return client.get(f"/api/v1/outliers?{query}", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_the_api_names_the_slow_agent_among_its_nodes_peers(client, read_token, peers):
    r = get(client, read_token, "metric=agent_response_ms&stat=p95&window=15m&peers=node")
    assert r.status_code == 200, r.content
    body = r.json()
    assert [o["agent"] for o in body] == ["agent-5"]
    o = body[0]
    assert o["node"] == "node-1" and o["count"] == 60 and o["mads"] > 5
    assert o["peer_band"][1] < o["value"] and o["peer_band"][0] < o["peer_median"] < o["peer_band"][1]


def test_the_api_finds_a_fat_agent_by_its_memory_peak_among_the_fleet(client, read_token, peers, settings):
    settings.OUTLIER_MIN_COUNT = 5
    body = get(client, read_token, "metric=agent_memory_bytes&stat=max&window=15m&peers=fleet").json()
    assert [o["agent"] for o in body] == ["agent-8"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("metric=agent_response_ms&stat=p42", "stat"),
        ("metric=agent_response_ms&peers=cluster", "peers"),
        ("metric=agent_response_ms&tolerance=0", "tolerance"),
        ("metric=agent_response_ms&tolerance=lots", "tolerance"),
        ("metric=agent_response_ms&agent=agent-1", "agent"),
        ("stat=p95", "metric"),
    ],
)
def test_a_bad_parameter_gets_400_naming_it(client, read_token, peers, query, param):
    r = get(client, read_token, query)
    assert r.status_code == 400 and r.json()["param"] == param


def test_an_unknown_metric_gets_404(client, read_token, peers):
    assert get(client, read_token, "metric=nope_ms").status_code == 404
