"""Percentiles read from rollups agree with exact ones from the raw points within 1 %."""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.db import connection

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import compact, query
from perfdash.metrics.batch import Batch
from perfdash.metrics.scope import Scope

NOW = time.time()


def fleet_batches(n_batches: int = 6, per_batch: int = 5000, seed: int = 7) -> list[Batch]:
    """Latency points from 40 agents on 4 nodes over the last 50 minutes, per-tool medians."""
    rng = np.random.default_rng(seed)
    tools = ["web_search", "calculator", "code_exec"]
    series = [
        ("tool_execution_ms", f"node-{a % 4}", f"agent-{a}", f'{{"tool":"{t}"}}')
        for a in range(40)
        for t in tools
    ]
    medians = np.array([[200.0, 20.0, 1500.0][i % 3] for i in range(len(series))])
    out = []
    for b in range(n_batches):
        idx = rng.integers(0, len(series), per_batch).astype(np.int32)
        values = rng.lognormal(np.log(medians[idx]), 0.7)
        ts = NOW - rng.uniform(0, 3000, per_batch)
        out.append(Batch(f"acc-{b}", series, idx, ts, values))
    return out


def exact(sql_filter: str, params: list, seconds: int) -> dict[str, float]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY p.value) "
            "FROM metrics_point p JOIN metrics_series s ON s.id = p.series_id "
            f"WHERE p.ts >= to_timestamp(%s) AND {sql_filter}",
            [NOW - seconds, *params],
        )
        n, pct = cur.fetchone()
    return {"count": n, **dict(zip(["p50", "p90", "p95", "p99"], pct, strict=True))}


@pytest.fixture
def stored(db):
    token = ApiToken.issue("acc", ["ingest"])[0]
    for batch in fleet_batches():
        assert IngestedBatch.store(token.id, batch, now=NOW)


SCOPES = [
    (Scope(), "true", []),
    (Scope(node="node-2"), "s.node = %s", ["node-2"]),
    (Scope(agent="agent-13"), "s.agent = %s", ["agent-13"]),
    (Scope(tag_key="tool", tag_value="code_exec"), "s.tags->>'tool' = %s", ["code_exec"]),
    (
        Scope(node="node-1", tag_key="tool", tag_value="web_search"),
        "s.node = %s AND s.tags->>'tool' = %s",
        ["node-1", "web_search"],
    ),
]


@pytest.mark.parametrize("compacted", [False, True], ids=["from-deltas", "after-compaction"])
@pytest.mark.parametrize(
    "scope, where, params", SCOPES, ids=lambda x: repr(x)[:40] if isinstance(x, Scope) else ""
)
def test_percentiles_match_exact_values_within_one_percent(stored, compacted, scope, where, params):
    if compacted:
        assert compact.compact() > 0
    window = 3600  # all points lie within the last 50 minutes
    got = query.stats("tool_execution_ms", window, scope, now=NOW)
    want = exact(where, params, window + 120)
    assert got["count"] == want["count"] > 100
    for p in ("p50", "p90", "p95", "p99"):
        assert got[p] == pytest.approx(want[p], rel=0.01), p


def test_window_edges_count_only_points_inside_the_window(stored):
    # 5 minutes are answered from minute rows: the count is exact to the minute.
    end = (int(NOW) // 60 + 1) * 60
    got = query.stats("tool_execution_ms", 300, now=NOW)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics_point WHERE ts >= to_timestamp(%s)", [end - 300])
        assert got["count"] == cur.fetchone()[0]


def test_long_windows_read_hour_rollups_and_agree_with_short_ones(stored):
    compact.compact()
    day = query.stats("tool_execution_ms", 86400, now=NOW)
    month = query.stats("tool_execution_ms", 30 * 86400, now=NOW)
    assert day["count"] == month["count"] == 30_000
    assert day["p99"] == month["p99"]
