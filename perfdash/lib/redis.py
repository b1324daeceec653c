from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def key(*parts: object) -> str:
    """A key of perfdash's own, under REDIS_KEY_PREFIX."""
    return settings.REDIS_KEY_PREFIX + ":".join(map(str, parts))
