"""Memory per agent kept in the web process (peaks.py) answers as the store does."""

from __future__ import annotations

import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.dashboard import panels, peaks
from perfdash.dashboard.peaks import AgentPeaks
from perfdash.ingest.models import IngestedBatch
from perfdash.live import peaks as live_peaks
from perfdash.metrics.batch import Batch

NOW = time.time()


def batch(batch_id: str, rows: list[tuple[str, str, float, float]], now: float) -> Batch:
    """rows: (node, agent, seconds ago, bytes) of agent_memory_bytes, plus one response time."""
    memory = sorted({("agent_memory_bytes", n, a, "{}") for n, a, _, _ in rows})
    series = [*memory, ("agent_response_ms", "node-1", "agent-1", "{}")]
    idx = [series.index(("agent_memory_bytes", n, a, "{}")) for n, a, _, _ in rows] + [len(series) - 1]
    ts = [now - ago for _, _, ago, _ in rows] + [now]
    value = [v for *_, v in rows] + [9e9]  # not memory: no peak
    return Batch(batch_id, series, np.array(idx, np.int32), np.array(ts), np.array(value))


def test_a_batch_s_peaks_are_each_agent_s_maximum_per_minute():
    minute = int(NOW // 60) * 60
    b = Batch(
        "b",
        [
            ("agent_memory_bytes", "node-1", "a", "{}"),
            ("agent_memory_bytes", "node-1", "a", '{"op":"read"}'),  # the same agent-level rollup
            ("agent_memory_bytes", "node-2", "b", "{}"),
            ("agent_response_ms", "node-1", "a", "{}"),
        ],
        np.array([0, 1, 0, 2, 2, 3], np.int32),
        np.array([minute + 1, minute + 2, minute + 59, minute - 1, minute + 5, minute + 3]),
        np.array([5.0, 9.0, 7.0, 4.0, 3.0, 1e9]),
    )
    assert sorted(live_peaks.of_batch(b)) == [
        ("node-1", "a", minute, 9.0),
        ("node-2", "b", minute - 60, 4.0),
        ("node-2", "b", minute, 3.0),
    ]
    assert live_peaks.of_batch(b, "tokens_total") == []


def test_peaks_are_maxima_so_a_batch_seen_twice_changes_nothing():
    kept = AgentPeaks()
    minute = int(NOW // 60) * 60
    kept.add([("node-1", "a", minute, 5.0), ("node-1", "a", minute - 60, 8.0), ("node-2", "b", minute, 1.0)])
    kept.add([("node-1", "a", minute, 5.0), ("node-1", "a", minute, 3.0)])
    assert kept.per_agent(now=NOW) == {"a": 8.0, "b": 1.0}
    assert kept.per_agent("node-2", now=NOW) == {"b": 1.0}
    kept.add([("node-2", "b", minute, 2.0), ("node-2", "b", minute - peaks.WINDOW_S, 99.0)])
    assert kept.per_agent(now=NOW) == {"a": 8.0, "b": 2.0}  # the second is before the window
    assert kept.per_agent(now=NOW + peaks.WINDOW_S) == {}  # out of the window
    first = int(NOW // 60) * 60 + 60 - peaks.WINDOW_S  # the window's first minute
    edges = AgentPeaks()
    edges.add([("node-1", "first", first, 1.0), ("node-1", "before", first - 60, 1.0)])
    assert edges.per_agent(now=NOW) == {"first": 1.0}
    kept.drop_before(minute)
    assert kept.per_agent(now=NOW) == {"a": 5.0, "b": 2.0}


@pytest.mark.django_db(transaction=True)
def test_kept_peaks_give_the_memory_panel_the_store_gives():
    token = ApiToken.issue("k", ["ingest"])[0]
    now = time.time()  # the panel reads the window as of the clock
    b = batch(
        "b1",
        [
            ("node-1", "agent-1", 10, 3e8),
            ("node-1", "agent-1", 200, 5e8),  # earlier in the window: still the peak
            ("node-1", "agent-2", 30, 1e8),
            ("node-2", "agent-3", 400, 9e8),  # older than five minutes
            ("node-2", "agent-3", 5, 2e8),
            ("node-2", "agent-1", 5, 6e8),  # the same agent on another node
        ],
        now,
    )
    IngestedBatch.store(token.id, b, now=now)
    from_announcements, from_read = AgentPeaks(), AgentPeaks()
    from_announcements.add(live_peaks.of_batch(b))
    from_read.add(peaks.read(now=now))
    for view in (panels.View(window="5m"), panels.View(node="node-1"), panels.View(agent="agent-3")):
        stored = panels.memory(view)
        assert panels.memory(view, from_announcements) == stored
        assert panels.memory(view, from_read) == stored
    assert [r["agent"] for r in panels.memory(panels.View())["top"]] == ["agent-1", "agent-3", "agent-2"]
    assert panels.memory(panels.View(node="node-1"))["top"][0]["mb"] == 500
