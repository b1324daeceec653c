"""Per-token points-per-second limit, counted in Redis so all web processes share it."""

from __future__ import annotations

import time

from django.conf import settings

from perfdash.lib.redis import client, key


def allow(token_id: int, points: int) -> bool:
    limit = settings.INGEST_RATE_LIMIT
    if not limit:
        return True
    name = key("rate", token_id, int(time.time()))
    pipe = client().pipeline()
    pipe.incrby(name, points)
    pipe.expire(name, 2)
    used, _ = pipe.execute()
    return used <= limit
