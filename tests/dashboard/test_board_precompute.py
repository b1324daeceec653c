"""Saved boards' panels of 7 days and more are computed by a worker ahead of their viewers and
kept in Redis for every web process; a viewer gets the worker's copy while it is within the
panel's reuse time, and the panel says how old it is."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import numpy as np
import pytest
import redis

from perfdash.api.models import ApiToken
from perfdash.beat import BEAT_SCHEDULE
from perfdash.dashboard import boards, explore
from perfdash.dashboard.models import Board
from perfdash.dashboard.tasks import precompute_boards
from perfdash.ingest.models import IngestedBatch
from perfdash.lib import redis as redis_keys
from perfdash.metrics.batch import Batch
from tests.conftest import start_worker, wait_until

WEEK = "metric=agent_response_ms&stat=count&stat=p95&group=agent&window=7d"
BOARD = boards.BoardSpec(
    name="Ahead",
    slug="ahead",
    panels=(
        boards.PanelSpec("Week", WEEK),
        boards.PanelSpec("Hour", "metric=agent_response_ms&stat=count&window=1h"),
    ),
)


def respond(token: int, n: int, batch_id: str) -> None:
    now = time.time()
    series = [("agent_response_ms", "node-1", f"agent-{i}", "{}") for i in range(3)]
    idx = np.arange(n, dtype=np.int32) % 3
    batch = Batch(batch_id, series, idx, np.full(n, now - 30), 100.0 + np.arange(n) * 10)
    IngestedBatch.store(token, batch, now=now)


def panel(data: dict, title: str) -> dict:
    return next(p for p in data["panels"] if p["title"] == title)["data"]


def counted(data: dict, title: str) -> int:
    return next(r for r in panel(data, title)["rows"] if r.get("all"))["count"]


def test_a_viewer_in_any_process_is_served_the_worker_s_copy_of_a_long_panel(token):
    respond(token, 3, "first")
    assert boards.precompute([BOARD]) == 1  # the week's panel; the hour's is live

    respond(token, 2, "second")
    boards.forget(shared=False)  # another web process: nothing of its own yet
    data = boards.build(BOARD)
    assert counted(data, "Week") == 3  # the worker's, within its reuse time
    assert counted(data, "Hour") == 5  # live: read each time
    assert time.time() - 30 < panel(data, "Week")["as_of"] <= data["as_of"] <= time.time()


def test_the_worker_s_copy_is_the_panel_a_viewer_would_compute(token):
    respond(token, 30, "first")
    boards.precompute([BOARD])
    served = panel(boards.build(BOARD), "Week")
    # The same view computed at the same moment, plainly: equal once both are JSON, as sent.
    plain = explore.chart(boards.check_query(WEEK), served["as_of"])
    assert served == json.loads(json.dumps({**plain, "as_of": served["as_of"]}))
    assert [r["name"] for r in served["rows"]] == ["agent-0", "agent-1", "agent-2", "all"]


def test_a_copy_older_than_the_panel_s_reuse_time_is_computed_again(token):
    respond(token, 3, "first")
    boards.precompute([BOARD])
    key = boards._shared_key(boards.check_query(WEEK))
    kept = json.loads(redis_keys.client().get(key))
    redis_keys.client().set(key, json.dumps({**kept, "as_of": kept["as_of"] - 31}))
    respond(token, 2, "second")
    boards.forget(shared=False)
    assert counted(boards.build(BOARD), "Week") == 5


def test_a_pass_renews_only_copies_due_before_the_next_and_stops_at_its_budget(token):
    respond(token, 3, "first")
    two = boards.BoardSpec("Two", "two", panels=(*BOARD.panels, boards.PanelSpec("Memory", WEEK + "&node=n")))
    assert boards.precompute([two], budget_s=0) == 1  # one at least, then over budget
    assert boards.precompute([two], budget_s=0) == 1  # the other one, oldest first
    assert boards.precompute([two]) == 0  # both fresh past the next pass


def test_beat_runs_a_pass_as_often_as_the_copies_expect():
    assert BEAT_SCHEDULE["precompute-boards"]["schedule"].total_seconds() == boards.PRECOMPUTE_EVERY_S


def test_a_board_whose_window_is_chosen_is_computed_for_its_viewer(token):
    respond(token, 3, "first")
    boards.precompute([BOARD])
    respond(token, 2, "second")
    boards.forget(shared=False)
    assert counted(boards.build(BOARD, window="14d"), "Week") == 5  # not the board's own window


@pytest.fixture
def hanging_redis(monkeypatch):
    """A Redis that takes connections and commands and never answers, as perfdash's client
    meets it; what it was sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _swallow(c, received), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    hung = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=0.2, retry=redis_keys.RETRY)
    monkeypatch.setattr(redis_keys, "client", lambda: hung)
    yield received
    listener.close()


def _swallow(conn: socket.socket, received: list[bytes]) -> None:
    with conn:
        while data := conn.recv(65536):
            received.append(data)


def test_a_hanging_redis_is_waited_for_once_then_left_alone_for_a_while(token, hanging_redis):
    respond(token, 3, "first")
    three = boards.BoardSpec(
        "Three",
        "three",
        panels=tuple(boards.PanelSpec(f"Week {n}", f"{WEEK}&node={n}") for n in ("node-1", "a", "b")),
    )
    boards.forget(shared=False)
    data = boards.build(three)
    assert counted(data, "Week node-1") == 3  # computed by the viewer: Redis did not answer
    # One panel's wait, with its one retry, not three: the other panels did not ask.
    assert 1 <= len(hanging_redis) <= 2
    asked = len(hanging_redis)
    boards.build(three)
    assert len(hanging_redis) == asked  # within the back-off, nothing more is asked of it
    boards.forget(shared=False)  # and the back-off with it: Redis is asked again
    boards.build(three)
    assert len(hanging_redis) > asked


@pytest.fixture
def forecast_worker(clean_tables, redis_queue, tmp_path_factory):
    proc = start_worker(tmp_path_factory.mktemp("worker"), "boards", queues="forecast")
    yield proc
    proc.kill(signal.SIGTERM)


def test_the_task_precomputes_saved_boards_on_a_real_worker(forecast_worker):
    Board.load([BOARD])
    respond(ApiToken.issue("t", ["ingest"])[0].id, 3, "first")
    precompute_boards.delay()
    key = boards._shared_key(boards.check_query(WEEK))
    wait_until(lambda: redis_keys.client().get(key) is not None, what="the worker to precompute the board")
    assert next(r for r in json.loads(redis_keys.client().get(key))["rows"] if r.get("all"))["count"] == 3
