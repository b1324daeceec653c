"""Deploy verification on data with a known answer, stored through the ingest path into the
real PostgreSQL: which cohorts are compared (canary, before/after, untagged, one node), and
the verdicts (slower, no change, too little data)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from perfdash.api.models import ApiToken
from perfdash.compare import verify
from perfdash.compare.compare import INSUFFICIENT, NO_CHANGE, SLOWER
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

# On the comparison's 5-minute blocks, so that every run cuts the same points into the same
# cohorts and blocks, and gets the same answers.
BLOCK_S = 300
NOW = time.time() // BLOCK_S * BLOCK_S
# Mid-minute, as a deploy happens; 25 minutes ago, so that the 20 minutes after it are over.
DEPLOY = NOW - 1500 + 17
AFTER = "20m"
AGENTS = 10

Versions = Callable[[np.ndarray, np.ndarray], np.ndarray]


def rolled(new: str = "1.3.0", old: str = "1.2.0") -> Versions:
    """Every agent runs `old` until the deploy, `new` from then on."""
    return lambda agent, ts: np.where(ts >= DEPLOY, new, old)


def canary(new: str = "1.3.0", old: str = "1.2.0") -> Versions:
    """Agents 5-9 switch to `new` at the deploy; agents 0-4 keep `old`."""
    return lambda agent, ts: np.where((ts >= DEPLOY) & (agent >= 5), new, old)


def untagged(agent: np.ndarray, ts: np.ndarray) -> np.ndarray:
    return np.full(len(ts), "")


def slower_in(version: str, by: float = 1.3) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    return lambda agent, ts, v: np.where(v == version, by, 1.0)


def after_deploy(by: float = 1.3) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    return lambda agent, ts, v: np.where(ts >= DEPLOY, by, 1.0)


def report(
    versions: Versions,
    factor: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    *,
    metric: str = "agent_response_ms",
    n: int = 6000,
    seed: int = 1,
    now: float = NOW,
    deploy: float = DEPLOY,
) -> None:
    """`n` log-normal points of `metric` (median 900 ms) from 10 agents on 2 nodes (agent i on
    node-(i % 2)) over the 50 minutes before `now`, each tagged with the version `versions`
    gives its agent at its time ("": none), multiplied by `factor`. `now` and `deploy` move
    the whole picture in time."""
    rng = np.random.default_rng(seed)
    agent = rng.integers(0, AGENTS, n)
    ts = now - rng.uniform(60, 3000, n)
    version = versions(agent, ts - (deploy - DEPLOY))
    values = 900 * np.exp(0.45 * rng.standard_normal(n))
    if factor is not None:
        values *= factor(agent, ts - (deploy - DEPLOY), version)
    keys = [
        (metric, f"node-{a % 2}", f"agent-{a}", orjson.dumps({"version": v} if v else {}).decode())
        for a, v in zip(agent.tolist(), version.tolist(), strict=True)
    ]
    series = sorted(set(keys))
    position = {s: i for i, s in enumerate(series)}
    idx = np.array([position[k] for k in keys], np.int32)
    batch = Batch(f"{metric}-{seed}-{now}", series, idx, ts, np.round(values, 2))
    assert IngestedBatch.store(ApiToken.issue("fleet", ["ingest"])[0].id, batch, now=now)


@pytest.fixture(autouse=True)
def verify_after(settings) -> None:
    settings.DEPLOY_VERIFY_AFTER = AFTER


def verified(previous_deploy: str | None = None, **tags: str) -> dict:
    """The verification at NOW of a deploy of 1.3.0 at DEPLOY, with these tags."""
    return verify.verify(DEPLOY, {"version": "1.3.0", **tags}, NOW, previous_deploy)


def test_a_rolled_out_version_that_is_slower_is_found_against_the_one_before(db):
    report(rolled(), slower_in("1.3.0"))
    v = verified()
    assert (v["version"], v["against"], v["how"]) == ("1.3.0", "1.2.0", "before/after")
    response = v["metrics"]["agent_response_ms"]
    assert v["verdict"] == response["verdict"] == SLOWER and response["stat"] == "p95"
    assert response["lo"] < 0.3 < response["hi"] and 0 < response["lo"] < response["rel"]
    assert response["b"] / response["a"] == pytest.approx(1 + response["rel"], abs=1e-4)
    assert (
        response["summary"].startswith("version 1.3.0, ")
        and " is slower than version 1.2.0, " in response["summary"]
    )
    assert (
        response["change"].startswith("p95 ")
        and f"+{response['rel'] * 100:.0f} % (95 % interval" in response["change"]
    )
    # The 20 minutes before the deploy against the 20 after it; the minute of the deploy in neither.
    assert v["a"]["to"] == iso(DEPLOY // 60 * 60) and v["b"]["from"] == iso(DEPLOY // 60 * 60 + 60)
    assert v["b"]["to"] == iso(DEPLOY // 60 * 60 + 60 + 1200) and v["a"]["version"] == "1.2.0"
    # Metrics with no point at all are said to have too little data, and do not decide the verdict.
    assert v["metrics"]["memory_op_ms"]["verdict"] == INSUFFICIENT
    assert v["checked_at"] == iso(NOW) and v["notes"] == []


def test_a_canary_is_compared_with_the_version_still_running_over_the_same_time(db):
    report(canary(), slower_in("1.3.0"))
    v = verified()
    assert (v["against"], v["how"], v["verdict"]) == ("1.2.0", "canary", SLOWER)
    assert v["a"]["from"] == v["b"]["from"] and v["a"]["to"] == v["b"]["to"]
    assert v["metrics"]["agent_response_ms"]["summary"].startswith(
        "version 1.3.0 is slower than version 1.2.0"
    )


def test_a_deploy_that_changed_nothing_is_no_change(db):
    report(rolled())
    v = verified()
    response = v["metrics"]["agent_response_ms"]
    assert v["verdict"] == response["verdict"] == NO_CHANGE
    assert response["lo"] < 0 < response["hi"]


def test_too_few_points_are_insufficient_data_not_a_guess(db):
    report(rolled(), slower_in("1.3.0"), n=150)
    v = verified()
    response = v["metrics"]["agent_response_ms"]
    assert v["verdict"] == response["verdict"] == INSUFFICIENT
    assert response["rel"] is None and "fewer than the 100 a comparison needs" in response["summary"]


def test_the_previous_version_is_the_earlier_deploys_else_the_one_with_most_points_before(db):
    report(rolled(old="1.1.0"))
    report(rolled(old="1.2.0"), n=3000, seed=2)
    assert verify.design(DEPLOY, {"version": "1.3.0"}).against == "1.1.0"
    assert verify.design(DEPLOY, {"version": "1.3.0"}, previous_deploy="1.2.0").against == "1.2.0"


def test_points_without_a_version_compare_the_fleet_before_and_after(db):
    report(untagged, after_deploy())
    v = verified()
    assert (v["against"], v["how"], v["verdict"]) == (None, "before/after", SLOWER)
    assert v["a"]["version"] is None and "No point tagged version=1.3.0" in v["notes"][0]
    assert v["metrics"]["agent_response_ms"]["rel"] == pytest.approx(0.3, abs=0.08)


def test_a_deploy_on_one_node_is_compared_on_that_node(db):
    # node-1's agents move to 1.3.0 (slower); node-0's keep 1.2.0. Across the fleet 1.2.0
    # still runs (a canary), on node-1 it does not (before/after).
    report(
        lambda agent, ts: np.where((ts >= DEPLOY) & (agent % 2 == 1), "1.3.0", "1.2.0"), slower_in("1.3.0")
    )
    on_node = verified(node="node-1")
    assert (on_node["how"], on_node["node"], on_node["verdict"]) == ("before/after", "node-1", SLOWER)
    assert on_node["a"]["node"] == on_node["b"]["node"] == "node-1"
    assert verify.design(DEPLOY, {"version": "1.3.0"}).how == "canary"


def test_a_comparison_that_fails_loses_none_of_the_others(db, monkeypatch):
    report(rolled(), slower_in("1.3.0"))
    real = verify.compare_cohorts

    def failing(metric, *args, **kwargs):
        if metric == "tool_execution_ms":
            raise ZeroDivisionError
        return real(metric, *args, **kwargs)

    monkeypatch.setattr(verify, "compare_cohorts", failing)
    v = verified()
    assert v["metrics"]["tool_execution_ms"]["verdict"] == verify.ERROR
    assert v["metrics"]["agent_response_ms"]["verdict"] == v["verdict"] == SLOWER


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
