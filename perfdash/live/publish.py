"""Telling live dashboards that new points were committed (called by the ingest worker)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)
GROUP = "metrics"
TIMEOUT_S = 2.0

# One event loop per process, kept running in a thread: channels-redis keeps its connection
# pool per loop, so `async_to_sync` (a new loop per call) would reconnect to Redis for every
# batch.
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_lock = threading.Lock()


def points_committed(points: int, metrics: list[str], memory: Iterable[tuple] = ()) -> None:
    """A compact delta: how many points, of which metrics, and the peak memory of each agent
    in it per minute (live pages keep memory per agent from these: peaks.py)."""
    _send({"type": "metrics.changed", "points": points, "metrics": metrics, "memory": list(memory)})


def alerts_changed(events: int) -> None:
    """Alerts fired or resolved: pages showing firing alerts refresh."""
    _send({"type": "alerts.changed", "events": events})


def forecasts_changed(rows: int) -> None:
    """A refit stored new forecasts: capacity pages refresh."""
    _send({"type": "forecasts.changed", "rows": rows})


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():  # a forked worker child needs its own
            _loop, _loop_pid = asyncio.new_event_loop(), os.getpid()
            threading.Thread(target=_loop.run_forever, name="perfdash-publish", daemon=True).start()
        return _loop


def _send(message: dict) -> None:
    """Queued on the kept loop, not waited for: the ingest task goes on to its next batch.
    Never raises: the change is committed either way, and dashboards catch up on the next."""
    try:
        future = asyncio.run_coroutine_threadsafe(_group_send(message), _event_loop())
    except Exception as exc:
        log.warning("could not notify live dashboards: %s", type(exc).__name__)
    else:
        future.add_done_callback(_log_failure)


async def _group_send(message: dict) -> None:
    await asyncio.wait_for(get_channel_layer().group_send(GROUP, message), TIMEOUT_S)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not notify live dashboards: %s", type(future.exception()).__name__)
