"""The live socket, with the real Redis channel layer: auth, origin, and coalescing."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import numpy as np
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from perfdash.asgi import application
from perfdash.live.publish import GROUP, points_committed

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def session_cookie(username: str = "viewer") -> bytes:
    client = Client()
    user = User.objects.filter(username=username).first() or User.objects.create_user(
        username, password="x" * 12
    )
    client.force_login(user)
    connections.close_all()  # this runs in a worker thread; its connection must not outlive the test
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(cookie: bytes | None = None, origin=ORIGIN, path: str = "/ws/live/?page=overview&window=5m"):
    headers = [origin] if origin else []
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def test_a_socket_without_a_login_is_refused():
    ws = communicator()
    connected, code = await ws.connect()
    assert not connected and code == 4401


async def test_a_socket_from_another_origin_is_refused():
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, origin=(b"origin", b"http://evil.example"))
    connected, _ = await ws.connect()
    assert not connected


async def test_many_commits_reach_a_viewer_as_at_most_one_update_per_second():
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie)
    connected, _ = await ws.connect()
    assert connected
    layer = get_channel_layer()
    started_wall = time.time()
    for _ in range(30):  # 30 batches committed within ~1.5 s
        last_commit = time.time()
        await layer.group_send(
            GROUP, {"type": "metrics.changed", "points": 100, "metrics": ["agent_response_ms"]}
        )
        await asyncio.sleep(0.05)
    # Order, not seconds: collect updates until one whose reads began after the last commit
    # was announced (the deadline only guards against a hang on a busy machine).
    updates, deadline = [], time.monotonic() + 60
    while not updates or updates[-1]["read_at"] < last_commit:
        assert time.monotonic() < deadline, f"no update covers the last commit: {updates}"
        # receive_nothing waits without cancelling the consumer (a receive timeout would)
        if not await ws.receive_nothing(timeout=0.1, interval=0.01):
            updates.append(await ws.receive_json_from())
    await ws.disconnect()
    sent = [message["sent_at"] for message in updates]
    assert all(b - a >= 0.99 for a, b in itertools.pairwise(sent))
    assert len(updates) < 30  # the commits were coalesced
    first = updates[0]
    assert first["type"] == "update" and first["data"]["view"]["window"] == "5m"
    # read_at: when its reads began, so everything committed before it is in it
    assert started_wall <= first["read_at"] <= first["sent_at"]
    assert "kpis" in first["data"] and len(first["data"]["latency"]) == 4


async def test_the_worker_side_announcement_reaches_the_socket():
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, path="/ws/live/?page=tools&window=1h")
    connected, _ = await ws.connect()
    assert connected
    await asyncio.to_thread(points_committed, 10, ["tool_execution_ms"])  # what the ingest task calls
    message = await ws.receive_json_from(timeout=5)
    assert message["data"]["view"]["page"] == "tools" and "tools" in message["data"]
    await ws.disconnect()


async def test_an_alert_transition_refreshes_the_page():
    from perfdash.live.publish import alerts_changed

    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie)
    connected, _ = await ws.connect()
    assert connected
    await asyncio.to_thread(alerts_changed, 1)  # what the evaluation task calls
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "update" and message["data"]["alerts"] == []
    await ws.disconnect()


async def test_sockets_showing_the_same_view_share_one_computed_update():
    cookie = await asyncio.to_thread(session_cookie)
    first, second = communicator(cookie), communicator(cookie)
    other = communicator(cookie, path="/ws/live/?page=overview&window=1h")
    for ws in (first, second, other):
        assert (await ws.connect())[0]
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    a, b, c = [await ws.receive_json_from(timeout=5) for ws in (first, second, other)]
    for ws in (first, second, other):
        await ws.disconnect()
    assert a == b  # one computation, one encoding, the same moment
    assert c["data"]["view"]["window"] == "1h" and a["data"]["view"]["window"] == "5m"


async def group_members() -> int:
    layer = get_channel_layer()
    redis = layer.connection(layer.consistent_hash(GROUP))
    return await redis.zcard(layer._group_key(GROUP))


async def test_a_process_joins_the_announcements_once_for_all_its_sockets():
    cookie = await asyncio.to_thread(session_cookie)
    before = await group_members()
    sockets = [communicator(cookie, path=f"/ws/live/?page=overview&window={w}") for w in ("5m", "5m", "1h")]
    for ws in sockets:
        assert (await ws.connect())[0]
    assert await group_members() == before + 1  # one member, not one per socket
    # ... and every socket still hears each announcement
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    for ws in sockets:
        assert (await ws.receive_json_from(timeout=5))["type"] == "update"
    for ws in sockets:
        await ws.disconnect()
    # the last socket gone, the process leaves the group
    deadline = time.monotonic() + 5
    while await group_members() != before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await group_members() == before


async def test_a_socket_leaving_twice_does_not_take_a_newer_broadcast_with_it():
    from perfdash.dashboard.consumers import Broadcast
    from perfdash.dashboard.panels import View

    class Socket:  # what a broadcast needs of a consumer
        view = View(window="5m")

    first, second = Socket(), Socket()
    old = Broadcast.join(first)
    old.leave(first)
    new = Broadcast.join(second)  # the same view: a new broadcast
    old.leave(first)  # a second disconnect of the first socket
    loop = asyncio.get_running_loop()
    assert Broadcast._all.get((loop, second.view.key())) is new and Broadcast.any_in(loop)
    new.leave(second)
    assert not Broadcast.any_in(loop)


async def test_a_viewer_that_does_not_read_holds_up_no_one():
    from perfdash.dashboard.consumers import Broadcast
    from perfdash.dashboard.panels import View

    class Socket:
        view, accepted, sending = View(window="5m"), True, None

        def __init__(self, stuck: bool):
            self.stuck, self.got = stuck, []

        async def send(self, text_data: str) -> None:
            self.got.append(text_data)
            if self.stuck:  # its network buffer is full and never drains
                await asyncio.Event().wait()

    stuck, reading = Socket(stuck=True), Socket(stuck=False)
    broadcast = Broadcast.join(stuck)
    Broadcast.join(reading)
    try:
        for n in (1, 2, 3):
            broadcast.changed()
            deadline = time.monotonic() + 5
            while len(reading.got) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        assert len(reading.got) == 3  # one update a second, as if the other were not there
        assert len(stuck.got) == 1  # still taking the first: it skipped the rest, queued nothing
    finally:
        if stuck.sending:
            stuck.sending.cancel()
        broadcast.leave(stuck)
        broadcast.leave(reading)


async def listening_with_peaks():
    """This process's announcements listener, once its memory peaks hold every commit."""
    from perfdash.dashboard.consumers import Announcements

    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 5
    while Announcements.peaks_of(loop) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert Announcements.peaks_of(loop) is not None
    return Announcements._all[loop]


def top_agents(message: dict) -> dict[str, float]:
    return {row["agent"]: row["mb"] for row in message["data"]["memory"]["top"]}


async def test_live_memory_comes_from_the_announcements_not_a_read_per_update():
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie)
    assert (await ws.connect())[0]
    await listening_with_peaks()
    minute = int(time.time() // 60) * 60
    # A peak only an announcement carries (no such agent is stored): seen only if kept.
    memory = [["node-9", "announced", minute, 4.2e8]]
    await get_channel_layer().group_send(
        GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["agent_memory_bytes"], "memory": memory}
    )
    message = await ws.receive_json_from(timeout=5)
    await ws.disconnect()
    assert top_agents(message) == {"announced": 420.0}


async def test_a_peak_never_announced_shows_once_the_store_is_read_again(monkeypatch):
    from perfdash.api.models import ApiToken
    from perfdash.dashboard import consumers
    from perfdash.ingest.models import IngestedBatch
    from perfdash.metrics.batch import Batch

    monkeypatch.setattr(consumers, "PEAKS_READ_S", 0.3)
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie)
    assert (await ws.connect())[0]
    listener = await listening_with_peaks()

    def store_quietly() -> None:  # committed, but its announcement is lost
        token = ApiToken.issue("k", ["ingest"])[0]
        series = [("agent_memory_bytes", "node-1", "quiet", "{}")]
        batch = Batch("b", series, np.zeros(1, np.int32), np.array([time.time()]), np.array([7e8]))
        IngestedBatch.store(token.id, batch)
        connections.close_all()

    await asyncio.to_thread(store_quietly)
    deadline = time.monotonic() + 5
    while "quiet" not in listener.peaks.per_agent() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert listener.peaks.per_agent() == {"quiet": 7e8}
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    message = await ws.receive_json_from(timeout=5)
    await ws.disconnect()
    assert top_agents(message) == {"quiet": 700.0}


async def test_the_ingest_task_announces_each_agent_s_memory_peak(monkeypatch):
    from perfdash.api.models import ApiToken
    from perfdash.dashboard import peaks
    from perfdash.ingest.tasks import store_batch
    from perfdash.metrics.batch import Batch

    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie)
    assert (await ws.connect())[0]
    listener = await listening_with_peaks()

    def ingest() -> None:  # what the worker runs for a batch
        token = ApiToken.issue("k", ["ingest"])[0]
        series = [(metric, "node-1", "busy", "{}") for metric in ("agent_memory_bytes", "agent_response_ms")]
        now = time.time()
        batch = Batch("b", series, np.array([0, 0, 1], np.int32), np.full(3, now), np.array([3e8, 8e8, 1e9]))
        store_batch(batch.to_message(token.id))
        connections.close_all()

    reads = []
    monkeypatch.setattr(peaks, "read", lambda: reads.append(1) or [])  # any re-read from here on
    await asyncio.to_thread(ingest)
    message = await ws.receive_json_from(timeout=5)
    await ws.disconnect()
    assert top_agents(message) == {"busy": 800.0}
    assert listener.peaks.per_agent() == {"busy": 8e8} and reads == []  # so it was announced


@pytest.mark.parametrize(
    "origin",
    [b"http://localhost:9999", b"https://127.0.0.1", b"ftp://127.0.0.1", b"http://127.0.0.1", b"null"],
)
async def test_a_socket_from_another_port_or_scheme_of_an_allowed_host_is_refused(origin):
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, origin=(b"origin", origin))
    ws.scope["headers"].append((b"host", b"127.0.0.1:8000"))
    connected, _ = await ws.connect()
    assert not connected


@pytest.mark.parametrize(
    ("host", "origin"),
    [(b"127.0.0.1:8000", b"http://127.0.0.1:8000"), (b"localhost:8123", b"http://localhost:8123")],
)
async def test_a_socket_from_the_page_s_own_origin_is_accepted(host, origin):
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, origin=(b"origin", origin))
    ws.scope["headers"].append((b"host", host))
    connected, _ = await ws.connect()
    assert connected
    await ws.disconnect()


async def test_a_malformed_frame_is_dropped_with_one_line_and_the_socket_stays(caplog):
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie)
    assert (await ws.connect())[0]
    with caplog.at_level("INFO"):
        await ws.send_to(text_data="{not json")
        await ws.send_to(bytes_data=b"\xff\x00")
        assert await ws.receive_nothing(timeout=0.3)
    assert [r for r in caplog.records if r.exc_info] == []
    assert sum("ignored" in r.getMessage() for r in caplog.records) == 2
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    assert (await ws.receive_json_from(timeout=10))["type"] == "update"  # still served
    await ws.disconnect()


@pytest.mark.parametrize("query", ["agent=a%00b", "node=%00", "tool=x%01"])
async def test_a_filter_with_control_characters_closes_the_socket_as_a_bad_request(query):
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie, path=f"/ws/live/?page=overview&{query}")
    assert (await ws.connect())[0]  # accepted, so that the browser can read the close code
    assert await closed_with(ws) == 4400


async def closed_with(ws) -> int | None:
    output = await ws.receive_output(timeout=5)
    return output.get("code") if output["type"] == "websocket.close" else None


async def test_a_user_over_the_socket_cap_is_told_so_and_others_are_not(settings):
    settings.LIVE_MAX_SOCKETS_PER_USER = 2
    cookie = await asyncio.to_thread(session_cookie)
    first, second, third = (communicator(cookie) for _ in range(3))
    assert (await first.connect())[0] and (await second.connect())[0]
    assert (await third.connect())[0]  # accepted, so that the browser can read the close code
    assert await closed_with(third) == 4429
    other = communicator(await asyncio.to_thread(session_cookie, "another-viewer"))
    assert (await other.connect())[0] and await other.receive_nothing(timeout=0.2)
    await first.disconnect()
    again = communicator(cookie)
    assert (await again.connect())[0] and await again.receive_nothing(timeout=0.2)  # a slot came free
    for ws in (second, other, again):
        await ws.disconnect()


async def test_views_beyond_the_cap_update_less_often_until_a_slot_frees(settings):
    settings.LIVE_MAX_VIEWS, settings.LIVE_SLOW_INTERVAL_S = 1, 3.0
    cookie = await asyncio.to_thread(session_cookie)
    fast = communicator(cookie, path="/ws/live/?page=overview&agent=agent-1")
    slow = communicator(cookie, path="/ws/live/?page=overview&agent=agent-2")
    assert (await fast.connect())[0] and (await slow.connect())[0]
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    assert (await fast.receive_json_from(timeout=10))["every"] == 1.0
    assert (await slow.receive_json_from(timeout=10))["every"] == 3.0
    await fast.disconnect()
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    assert (await slow.receive_json_from(timeout=10))["every"] == 1.0
    await slow.disconnect()


async def test_live_computes_run_off_the_thread_that_serves_requests(monkeypatch):
    from perfdash.dashboard import panels

    threads = []
    build = panels.build
    monkeypatch.setattr(
        panels, "build", lambda *a: threads.append(threading.current_thread().name) or build(*a)
    )
    cookie = await asyncio.to_thread(session_cookie)
    ws = communicator(cookie)
    assert (await ws.connect())[0]
    await get_channel_layer().group_send(GROUP, {"type": "metrics.changed", "points": 1, "metrics": ["x"]})
    await ws.receive_json_from(timeout=10)
    await ws.disconnect()
    assert threads and all(name.startswith("perfdash-live") for name in threads)
