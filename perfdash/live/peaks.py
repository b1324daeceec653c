"""The memory peaks a committed batch carries in its announcement.

Live pages show each agent's peak memory; workers announce, with each committed batch, the
peak of every agent per minute, so a web process can keep them up to date without reading
the store (perfdash.dashboard.peaks keeps them).
"""

from __future__ import annotations

import numpy as np

from perfdash.metrics.batch import Batch

METRIC = "agent_memory_bytes"

Peak = tuple[str, str, int, float]  # node, agent, minute start (Unix seconds), bytes


def of_batch(batch: Batch, metric: str = METRIC) -> list[Peak]:
    """(node, agent, minute start in Unix seconds, maximum) of one metric's points: what
    the agent-level rollups of this batch add to each minute's maximum."""
    wanted = np.array([s[0] == metric for s in batch.series])[batch.series_idx]
    if not wanted.any():
        return []
    node_agent = sorted({s[1:3] for s in batch.series if s[0] == metric})
    slot = {na: i for i, na in enumerate(node_agent)}
    of_series = np.array([slot.get(s[1:3], -1) for s in batch.series])
    who, minute = of_series[batch.series_idx[wanted]], (batch.ts[wanted] // 60).astype(np.int64)
    value = batch.value[wanted]
    order = np.lexsort((value, minute, who))  # each (who, minute) group ends on its maximum
    last = np.ones(len(order), bool)
    last[:-1] = (np.diff(who[order]) != 0) | (np.diff(minute[order]) != 0)
    top = order[last]
    return [
        (*node_agent[w], m * 60, v)
        for w, m, v in zip(who[top].tolist(), minute[top].tolist(), value[top].tolist(), strict=True)
    ]
