"""A board's panels of long steps (7 days: 3-hour steps) are computed once for every viewer
within a fraction of their step; panels of short steps, the live ones, are read each time."""

from __future__ import annotations

import time

import numpy as np

from perfdash.dashboard import boards
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

BOARD = boards.BoardSpec(
    name="Reuse",
    slug="reuse",
    panels=(
        boards.PanelSpec("Week", "metric=agent_response_ms&stat=count&window=7d"),
        boards.PanelSpec("Hour", "metric=agent_response_ms&stat=count&window=1h"),
    ),
)


def respond(token: int, n: int, batch_id: str) -> None:
    now = time.time()
    series = [("agent_response_ms", "node-1", "agent-1", "{}")]
    batch = Batch(batch_id, series, np.zeros(n, np.int32), np.full(n, now - 30), np.full(n, 800.0))
    IngestedBatch.store(token, batch, now=now)


def counted(data: dict, title: str) -> int:
    panel = next(p for p in data["panels"] if p["title"] == title)
    return next(r for r in panel["data"]["rows"] if r.get("all"))["count"]


def test_a_weeks_panel_is_reused_within_its_reuse_time_and_an_hours_is_read_again(token):
    respond(token, 3, "first")
    before = boards.build(BOARD)
    assert counted(before, "Week") == counted(before, "Hour") == 3

    respond(token, 2, "second")
    again = boards.build(BOARD)
    assert counted(again, "Hour") == 5  # live: read each time
    assert counted(again, "Week") == 3  # reused: at most 30 s old

    boards.forget()
    assert counted(boards.build(BOARD), "Week") == 5


def test_a_board_built_for_a_given_moment_reuses_nothing(token):
    respond(token, 3, "first")
    boards.build(BOARD)
    respond(token, 2, "second")
    assert counted(boards.build(BOARD, now=time.time()), "Week") == 5


def test_reuse_is_a_360th_of_the_step_from_hourly_steps_and_at_most_a_minute():
    def reuse(query: str) -> float:
        return boards.reuse_s(boards.check_query(query))

    assert reuse("metric=m&window=24h") == 0  # 30-minute steps
    assert reuse("metric=m&window=24h&step=1h") == 10
    assert reuse("metric=m&window=7d") == 30  # 3-hour steps
    assert reuse("metric=m&window=30d&step=1d") == 60
