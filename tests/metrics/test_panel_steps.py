"""A panel's statistics per step are computed for every step at once; they are the numbers the
one-group-at-a-time path gives, on rows read from PostgreSQL (hours, minutes and deltas)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import compact, keys, query
from perfdash.metrics.batch import Batch

NOW = time.time()
SERIES = [
    ("tool_execution_ms", "node-1", "agent-1", '{"tool":"a"}'),
    ("tool_execution_ms", "node-2", "agent-2", '{"tool":"b"}'),
    ("tool_execution_ms", "node-2", "agent-3", '{"tool":"a"}'),
]


def store(token: int, name: str, n: int, seed: int, spread_s: float) -> None:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(SERIES), n).astype(np.int32)
    ts = NOW - rng.uniform(0, spread_s, n)
    # Latency-like values over several decades, a few negatives and zeros among them.
    values = np.round(rng.lognormal(4, 1.5, n), 1) * rng.choice([1, 1, 1, 1, 0, -1], n)
    IngestedBatch.store(token, Batch(name, SERIES, idx, ts, values), now=NOW)


@pytest.fixture
def stored(db) -> list[int]:
    token = ApiToken.issue("t", ["ingest"])[0].id
    store(token, "older", 20_000, 1, 6 * 3600)
    compact.compact()  # whole hours and minutes in the rollup tables
    store(token, "newer", 3_000, 2, 1800)  # deltas not yet folded
    return keys.ids("tool_execution_ms", query.FLEET)


def one_at_a_time(window: query.Window, ids: list[int], stats: list[str]) -> dict[str, list]:
    """Each step's statistics from its own group's sketch, by the per-group path (`_stat_values`)."""
    rows = window.of(ids)
    steps = (window.end - window.start) // window.step
    out = {stat: [0.0 if stat in ("count", "sum", "rate") else None] * steps for stat in stats}
    g = query._summaries(rows, (rows.period - window.start) // window.step)
    for i, bucket in enumerate(g.label):
        if 0 <= bucket < steps:
            values = query._stat_values(g, i, window.step)
            for stat in stats:
                out[stat][bucket] = values[stat]
    return {
        stat: [(window.start + i * window.step, query._clean(v)) for i, v in enumerate(vals)]
        for stat, vals in out.items()
    }


@pytest.mark.parametrize(("window_s", "step_s"), [(6 * 3600, 60), (6 * 3600, 1800), (24 * 3600, 3600)])
def test_every_step_s_statistics_are_those_of_its_own_group(stored, window_s, step_s):
    stats = list(query.STATS)
    agent_keys = [k for k, _ in keys.members("tool_execution_ms", "agent", query.FLEET)]
    window = query.read_window(sorted({*stored, *agent_keys}), window_s, step_s, now=NOW)
    for ids in (stored, agent_keys[:1], agent_keys):
        got = window.panel(ids, stats, buckets=0)["series"]
        expected = one_at_a_time(window, ids, stats)
        assert got == expected  # exactly: the same numbers, not close ones
        assert sum(v for _, v in got["count"]) > 0


def test_grouped_quantiles_of_groups_without_bins_are_nan():
    g = query.Groups(
        label=np.array([0, 1, 2]),
        count=np.array([2, 0, 1]),
        sum=np.array([3.0, 0.0, 5.0]),
        min=np.array([1.0, math.inf, 5.0]),
        max=np.array([2.0, -math.inf, 5.0]),
        pair_start=np.array([0, 2, 2, 3]),
        pair_key=np.array([0, 1, 2], np.int32),
        pair_count=np.array([1, 1, 1]),
    )
    got = query.grouped_quantiles(g, [0.5, 0.99])
    assert np.isnan(got[1]).all() and not np.isnan(got[[0, 2]]).any()
