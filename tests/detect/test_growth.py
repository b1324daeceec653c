"""Growth: how fast a mean rises, as a share of itself per minute, read from the minute
rollups; and peer outliers judged on it, which find a leak while its level is still ordinary."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.detect import outliers
from perfdash.detect.outliers import GROWTH_FLOOR, Peer, judge
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import query
from perfdash.metrics.batch import Batch
from tests.detect.conftest import NOW


def test_a_steady_rise_grows_by_its_slope_over_its_mean(db):
    now = time.time() // 60 * 60 - 1  # the last second of a minute: every minute whole
    ts = now - np.arange(0.5, 600, 10.0)  # six points a minute, evenly spread
    series = [("agent_memory_bytes", "n", name, "{}") for name in ("rise", "flat", "once")]
    rise = 40e6 + 1e6 * (ts - now) / 60  # 1 MB a minute
    values = np.concatenate([rise, np.full(ts.size, 50e6), [45e6]])
    idx = np.repeat(np.arange(3), [ts.size, ts.size, 1]).astype(np.int32)
    when = np.concatenate([ts, ts, [now - 30]])
    token = ApiToken.issue("g", ["ingest"])[0]
    assert IngestedBatch.store(token.id, Batch("g", series, idx, when, values), now=now)

    found = query.growth("agent_memory_bytes", 600, now=now)
    assert set(found) == {"rise", "flat"}  # "once" has points in one minute only
    mean = float(np.mean(rise))
    assert found["rise"]["avg"] == pytest.approx(mean)
    # To the running minute's middle, taken as that of its first 59 s.
    assert found["rise"]["growth"] == pytest.approx(1e6 / mean, rel=1e-3)
    assert found["flat"]["growth"] == pytest.approx(0, abs=1e-12)
    assert found["rise"]["count"] == ts.size
    with pytest.raises(query.QueryError, match="growth"):
        query.growth("agent_memory_bytes", 7 * 3600, now=now)


def test_a_young_leak_is_found_by_its_growth_while_its_level_is_still_ordinary(leaking):
    by_growth = outliers.find("agent_memory_bytes", query.GROWTH, 600, "node", min_count=10, now=NOW)
    found = [j for j in by_growth if j.outlier()]
    assert [j.agent for j in found] == ["agent-3"]
    assert found[0].mads > 5 and found[0].node == "node-1"
    assert 0.02 < found[0].value < 0.06  # about 2 MB/min of about 45 MB, over half the window
    by_level = outliers.find("agent_memory_bytes", "max", 600, "node", min_count=10, now=NOW)
    assert not any(j.outlier() for j in by_level)


def waving(n: int, rng) -> dict[str, Peer]:
    """n agents whose memory swings 8 % over 2-8 h periods, read at a random phase, with the
    noise of a five-minute slope: growths of up to 0.4 %/min either way."""
    period_min = rng.uniform(120, 480, n)
    growth = 0.08 * 2 * math.pi / period_min * np.cos(rng.uniform(0, 2 * math.pi, n))
    growth += 0.0005 * rng.standard_normal(n)
    return {f"agent-{i}": Peer(float(g), 30, "n") for i, g in enumerate(growth)}


@pytest.mark.parametrize("seed", range(20))
def test_among_50_agents_that_swing_alike_none_grows_as_an_outlier_and_a_leak_does(seed):
    values = waving(50, np.random.default_rng(seed))
    assert not any(j.outlier() for j in judge(values, 5, 5, 20, by_node=False, stat=query.GROWTH))
    values["agent-7"] = Peer(0.03, 30, "n")  # 3 %/min: 2 MB a minute of a 70 MB agent
    assert [j.agent for j in judge(values, 5, 5, 20, False, query.GROWTH) if j.outlier()] == ["agent-7"]


def test_peers_that_do_not_grow_at_all_make_only_a_real_growth_an_outlier():
    values = {f"a{i}": Peer(0.0, 30, "n") for i in range(10)} | {"a10": Peer(0.0003, 30, "n")}
    assert not any(j.outlier() for j in judge(values, 5, 5, 20, False, query.GROWTH))  # 1.8 %/h
    values["a10"] = Peer(6 * GROWTH_FLOOR, 30, "n")  # 12 %/h: beyond five least spreads
    assert [j.agent for j in judge(values, 5, 5, 20, False, query.GROWTH) if j.outlier()] == ["a10"]


def test_the_api_names_the_leaking_agent_by_its_growth(client, read_token, leaking, settings):
    settings.OUTLIER_MIN_COUNT = 10
    r = client.get(
        "/api/v1/outliers?metric=agent_memory_bytes&stat=growth&window=10m&peers=node",
        HTTP_AUTHORIZATION=f"Bearer {read_token}",
    )
    assert r.status_code == 200, r.content
    assert [o["agent"] for o in r.json()] == ["agent-3"]
    r = client.get(
        "/api/v1/outliers?metric=agent_memory_bytes&stat=growth&window=7h",
        HTTP_AUTHORIZATION=f"Bearer {read_token}",
    )
    assert r.status_code == 400 and r.json()["param"] == "window"
