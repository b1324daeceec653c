"""Per-event measurements, pushed by any process into one Redis list and drained by the
`health.record` task every few seconds.

One push is one round trip to Redis (a pipelined LPUSH + LTRIM), never a database write, so
ingest pays next to nothing for it. A push never raises: perfdash's own health must not break
what it measures. If Redis is away the measurements are lost, logged once until it is back.
"""

from __future__ import annotations

import logging
import time

import orjson

from perfdash.lib.redis import client, key

log = logging.getLogger(__name__)

# At most this many measurements wait for the next drain: a drain that stops (no worker)
# must not grow Redis without bound. The newest are kept.
MAX_KEPT = 100_000
COUNTER_SUFFIX = "_total"

Measurement = tuple[str, float, dict[str, str]]  # metric, value, tags

_failing = False


def _key() -> str:
    return key("health", "measured")


def push(role: str, *measurements: Measurement, at: float | None = None) -> None:
    """Record measurements taken by a process of this `role` (web, worker, ...), which is
    the agent they are stored under. A `_total` metric's values are summed per drain; any
    other's are stored one point each."""
    global _failing
    at = time.time() if at is None else at
    entries = [orjson.dumps([at, role, metric, value, tags]) for metric, value, tags in measurements]
    try:
        client().pipeline(transaction=False).lpush(_key(), *entries).ltrim(_key(), 0, MAX_KEPT - 1).execute()
    except Exception as exc:
        if not _failing:
            log.warning("health measurements lost (Redis unavailable): %s", type(exc).__name__)
        _failing = True
        return
    _failing = False


def drain() -> list[tuple[float, str, str, float, dict[str, str]]]:
    """Take every waiting measurement, oldest first, as (at, role, metric, value, tags)."""
    entries, _ = client().pipeline().lrange(_key(), 0, -1).delete(_key()).execute()
    return [tuple(orjson.loads(e)) for e in reversed(entries)]
