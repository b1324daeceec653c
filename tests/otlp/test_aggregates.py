"""Pre-aggregated entries (a histogram's count, sum, min, max and sketch bins) travel in a
batch through the outbox and the message form, and are stored into the same rollups as the
points they summarise would be."""

from __future__ import annotations

import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import compact, query
from perfdash.metrics.batch import Aggregates, Batch
from perfdash.metrics.rollup import group_values
from perfdash.metrics.scope import Scope

NOW = time.time()
SERIES = [
    ("llm_call_ms", "node-1", "agent-1", '{"model":"m1"}'),
    ("llm_call_ms", "node-1", "agent-2", '{"model":"m2"}'),
]


def summarised(series_idx: list[int], ts: list[float], values: list[np.ndarray]) -> Aggregates:
    """One entry per array of values, summarised as ingest would summarise the points."""
    starts, keys, counts, rows = [0], [], [], []
    for v in values:
        g = group_values(np.zeros(len(v), np.int64), v)
        keys.append(g.pair_key)
        counts.append(g.pair_count)
        starts.append(starts[-1] + len(g.pair_key))
        rows.append((len(v), v.sum(), v.min(), v.max()))
    count, total, lo, hi = (np.array(c) for c in zip(*rows, strict=True))
    return Aggregates(
        np.array(series_idx, np.int32),
        np.array(ts, np.float64),
        count.astype(np.int64),
        total,
        lo,
        hi,
        np.array(starts, np.int64),
        np.concatenate(keys),
        np.concatenate(counts),
    )


@pytest.fixture
def values() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.lognormal(6, 1, n) for n in (3000, 1, 500)]


def test_a_batch_with_aggregates_reads_back_the_same_in_both_forms(values):
    agg = summarised([0, 1, 0], [NOW - 90, NOW - 30, NOW - 10], values)
    batch = Batch("b", SERIES, np.array([1], np.int32), np.array([NOW]), np.array([4.5]), agg)
    assert len(batch) == 4
    assert batch.recorded() == 1 + 3501
    for copy in (Batch.from_bytes(batch.to_bytes()), Batch.from_message(batch.to_message(1))):
        assert copy.series == batch.series
        assert np.array_equal(copy.value, batch.value)
        for name in Aggregates.__dataclass_fields__:
            assert np.array_equal(getattr(copy.aggregates, name), getattr(agg, name)), name


def test_a_batch_without_aggregates_keeps_its_binary_form():
    batch = Batch("b", SERIES, np.array([0], np.int32), np.array([NOW]), np.array([1.0]))
    assert b"aggregates" not in batch.to_bytes()
    assert Batch.from_bytes(batch.to_bytes()).aggregates is None


@pytest.mark.parametrize("compacted", [False, True], ids=["from-deltas", "after-compaction"])
def test_aggregates_count_in_the_rollups_as_their_points_would(db, values, compacted):
    token = ApiToken.issue("agg", ["ingest"])[0]
    ts = [NOW - 90, NOW - 30, NOW - 10]
    plain = Batch(
        "points",
        [(f"plain_{s[0]}", *s[1:]) for s in SERIES],
        np.repeat(np.array([0, 1, 0], np.int32), [len(v) for v in values]),
        np.repeat(np.array(ts), [len(v) for v in values]),
        np.concatenate(values),
    )
    extra = np.array([250.0, 7.0])
    aggregated = Batch(
        "aggregates",
        SERIES,
        np.array([0, 1], np.int32),
        np.array([NOW - 5, NOW - 5]),
        extra,
        summarised([0, 1, 0], ts, values),
    )
    plain.series_idx = np.concatenate([plain.series_idx, [0, 1]]).astype(np.int32)
    plain.ts = np.concatenate([plain.ts, [NOW - 5, NOW - 5]])
    plain.value = np.concatenate([plain.value, extra])
    assert IngestedBatch.store(token.id, plain, now=NOW)
    assert IngestedBatch.store(token.id, aggregated, now=NOW)
    if compacted:
        compact.compact()
    for scope in (Scope(), Scope(agent="agent-2"), Scope(tag_key="model", tag_value="m1")):
        want = query.stats("plain_llm_call_ms", 3600, scope, now=NOW)
        got = query.stats("llm_call_ms", 3600, scope, now=NOW)
        assert got["count"] == want["count"] > 0
        for stat in ("sum", "min", "max", "p50", "p90", "p99"):
            assert got[stat] == pytest.approx(want[stat], rel=1e-9), stat
