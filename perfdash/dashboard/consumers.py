"""Live dashboard updates: one coalesced update per second per page at most.

Workers announce committed points to the "metrics" group. Sockets of this process that show
the same view share one broadcast: when something changed, it computes the page once, as
late as it can (so the update holds everything committed until just before it goes out),
encodes it once, and sends it to all of them together, never sooner than a second after its
previous send.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from perfdash.dashboard import panels
from perfdash.dashboard.publish import GROUP

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 1.0
# The compute starts the median of recent compute times before its slot. Starting earlier holds
# back what was committed meanwhile; a late finish delays this send and every later slot. The
# median balances the two (p95 freshness ~ 0.95 s + lead + 1.95 x mean lateness) and, unlike a
# mean, is not dragged up for many seconds by one slow compute (one in five overlaps compaction).
COMPUTE_SAMPLES = 15


class Broadcast:
    """The sockets of one view in this process, and its push loop."""

    # Per event loop (tests run several in one process) and view.
    _all: dict[tuple, Broadcast] = {}

    def __init__(self, key: tuple, view: panels.View):
        self.key, self.view = key, view
        self.sockets: set[LiveConsumer] = set()
        self.dirty = False
        self.last_send = 0.0
        self.computes: deque[float] = deque([0.05], maxlen=COMPUTE_SAMPLES)  # recent compute times
        self.task: asyncio.Task | None = None

    @classmethod
    def join(cls, socket: LiveConsumer) -> Broadcast:
        key = (asyncio.get_running_loop(), socket.view.key())
        broadcast = cls._all.get(key) or cls._all.setdefault(key, cls(key, socket.view))
        broadcast.sockets.add(socket)
        return broadcast

    def leave(self, socket: LiveConsumer) -> None:
        self.sockets.discard(socket)
        if not self.sockets:
            self._all.pop(self.key, None)
            if self.task:
                self.task.cancel()

    def changed(self) -> None:
        self.dirty = True
        if self.task is None:
            self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self.dirty and self.sockets:
                # Start computing so that the result is ready when the next send is allowed.
                start_at = self.last_send + MIN_INTERVAL_S - statistics.median(self.computes)
                await asyncio.sleep(max(0.0, start_at - time.monotonic()))
                self.dirty = False
                started, read_at = time.monotonic(), time.time()
                # Not on the thread all sync views share (thread_sensitive): there it would wait
                # for ingest requests being parsed, and they for it.
                data = await database_sync_to_async(panels.build, thread_sensitive=False)(
                    self.view, parallel=True
                )
                self.computes.append(time.monotonic() - started)
                await asyncio.sleep(max(0.0, self.last_send + MIN_INTERVAL_S - time.monotonic()))
                self.last_send = time.monotonic()
                # read_at: everything committed before it is in this update.
                message = {"type": "update", "read_at": read_at, "sent_at": time.time(), "data": data}
                text = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()
                await asyncio.gather(
                    *(s.send(text_data=text) for s in list(self.sockets)), return_exceptions=True
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: the next change retries
            log.info("live push stopped: %s", type(exc).__name__)
        finally:
            self.task = None


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.close(code=4401)
            return
        params = {k: v[0] for k, v in parse_qs(self.scope["query_string"].decode()).items()}
        page = params.get("page", "overview")
        self.view = panels.View.from_params(params, page=page if page in panels.PAGES else "overview")
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        self.broadcast = Broadcast.join(self)
        if self.view.page == "capacity":
            # A refit that landed between the page's first load and this connect would
            # otherwise go unseen until the next one, an hour later.
            self.broadcast.changed()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "broadcast"):
            self.broadcast.leave(self)
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def alerts_changed(self, event: dict) -> None:
        await self.metrics_changed(event)

    async def forecasts_changed(self, event: dict) -> None:
        if self.view.page == "capacity":
            self.broadcast.changed()

    async def metrics_changed(self, event: dict) -> None:
        if self.view.page != "capacity":  # forecasts change hourly, not with every batch
            self.broadcast.changed()
