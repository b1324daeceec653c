"""Live dashboard updates: one coalesced update per second per page at most.

Workers announce committed points to the "metrics" group. Each socket marks itself dirty and
schedules one push no sooner than a second after its last one; the page data is computed
once per view and shared by every socket of this process that shows the same view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from perfdash.dashboard import panels
from perfdash.dashboard.publish import GROUP

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 1.0
_shared: dict[tuple, tuple[float, asyncio.Future]] = {}  # view -> (computed after, result)


async def view_data(view: panels.View, fresh_after: float) -> dict:
    """Page data computed after `fresh_after` (monotonic), shared across sockets."""
    key = view.key()
    cached = _shared.get(key)
    if cached and cached[0] >= fresh_after:
        return await cached[1]
    now = time.monotonic()
    for stale in [k for k, (at, f) in _shared.items() if at < now - 10 and f.done()]:
        del _shared[stale]  # views nobody has refreshed lately: the cache stays small
    future = asyncio.ensure_future(database_sync_to_async(panels.build)(view))
    _shared[key] = (now, future)
    try:
        return await future
    except Exception:
        _shared.pop(key, None)
        raise


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.close(code=4401)
            return
        params = {k: v[0] for k, v in parse_qs(self.scope["query_string"].decode()).items()}
        page = params.get("page", "overview")
        self.view = panels.View.from_params(params, page=page if page in panels.PAGES else "overview")
        self.dirty_since: float | None = None
        self.last_push = self.last_send = 0.0
        self.push_task: asyncio.Task | None = None
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        if self.view.page == "capacity":
            # A refit that landed between the page's first load and this connect would
            # otherwise go unseen until the next one, an hour later.
            await self.mark_dirty()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "view"):
            await self.channel_layer.group_discard(GROUP, self.channel_name)
        if getattr(self, "push_task", None):
            self.push_task.cancel()

    async def alerts_changed(self, event: dict) -> None:
        await self.metrics_changed(event)

    async def forecasts_changed(self, event: dict) -> None:
        if self.view.page == "capacity":
            await self.mark_dirty()

    async def metrics_changed(self, event: dict) -> None:
        if self.view.page != "capacity":  # forecasts change hourly, not with every batch
            await self.mark_dirty()

    async def mark_dirty(self) -> None:
        if self.dirty_since is None:
            self.dirty_since = time.monotonic()
        if self.push_task is None:
            self.push_task = asyncio.create_task(self.push())

    async def push(self) -> None:
        try:
            while self.dirty_since is not None:
                await asyncio.sleep(max(0.0, self.last_push + MIN_INTERVAL_S - time.monotonic()))
                since, self.dirty_since = self.dirty_since, None
                self.last_push = time.monotonic()  # the cadence counts from the start of a push
                data = await view_data(self.view, since)
                # ...and never two sends within a second, whatever the compute times did
                await asyncio.sleep(max(0.0, self.last_send + MIN_INTERVAL_S - time.monotonic()))
                self.last_send = time.monotonic()
                await self.send_json({"type": "update", "sent_at": time.time(), "data": data})
        except Exception as exc:  # the viewer left mid-push, or the database is away: next event retries
            log.info("live push stopped: %s", type(exc).__name__)
        finally:
            self.push_task = None
