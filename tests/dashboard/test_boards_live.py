"""A board's live socket: one socket for all its panels, updated when points are committed,
and a bad window closed as a bad request."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from channels.layers import get_channel_layer
from django.db import connections

from perfdash.dashboard import boards
from perfdash.dashboard.models import Board
from perfdash.live.publish import GROUP
from tests.dashboard.test_consumers import closed_with, communicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)
SEEDED = importlib.import_module("perfdash.dashboard.migrations.0002_seed_boards").SEEDED


def seed() -> None:
    Board.load(boards.parse(SEEDED))
    connections.close_all()  # a worker thread's connection must not outlive the test


async def test_a_board_is_one_socket_that_updates_every_panel_when_points_are_committed():
    await asyncio.to_thread(seed)
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, path="/ws/live/?page=board%2Fbeam&window=24h")
    assert (await ws.connect())[0]
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    update = await ws.receive_json_from(timeout=10)
    await ws.disconnect()
    data = update["data"]
    assert data["board"]["slug"] == "beam" and data["window"] == "24h"
    assert len(data["panels"]) == 10 and {p["data"]["view"]["window"] for p in data["panels"]} == {"24h"}


async def test_a_board_socket_with_a_bad_window_is_closed_as_a_bad_request():
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, path="/ws/live/?page=board%2Fbeam&window=soon")
    assert (await ws.connect())[0]
    assert await closed_with(ws) == 4400
