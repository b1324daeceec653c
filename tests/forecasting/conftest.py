"""A fleet's history, stored through the real ingest path and folded into the rollups."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import compact
from perfdash.metrics.batch import Batch

HOUR = 3600
NOW = (time.time() // HOUR) * HOUR + 1800  # half past an hour: the running hour is left out


class Fleet:
    """Points added with `add`, stored in batches of one series each by `store`."""

    def __init__(self, token_id: int):
        self.token_id = token_id
        self.pending: list[tuple[tuple[str, str, str, str], np.ndarray, np.ndarray]] = []

    def add(self, metric: str, node: str, agent: str, ts, values, tags: str = "{}") -> Fleet:
        ts, values = np.broadcast_arrays(np.asarray(ts, float), np.asarray(values, float))
        self.pending.append(((metric, node, agent, tags), ts.ravel(), values.ravel()))
        return self

    def hourly(
        self, metric: str, node: str, agent: str, hours: int, value: Callable[[np.ndarray], np.ndarray]
    ):
        """One point in each of the last `hours` whole hours, and one in the hour still running
        (a live fleet's newest whole hour is complete: newer data has arrived); `value` gets
        hours ago, oldest first."""
        ago = np.arange(hours, -1, -1)
        return self.add(metric, node, agent, NOW - 1800 - ago * HOUR + 600, value(ago))

    def store(self) -> None:
        for n, (series, ts, values) in enumerate(self.pending):
            batch = Batch(f"b{n}", [series], np.zeros(len(ts), np.int32), ts, values)
            IngestedBatch.store(self.token_id, batch, now=NOW)
        self.pending = []
        while compact.compact():
            pass


@pytest.fixture
def fleet(clean_tables) -> Fleet:
    return Fleet(ApiToken.issue("history", ["ingest"])[0].id)
