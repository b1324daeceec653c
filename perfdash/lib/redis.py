from __future__ import annotations

from functools import cache

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# One retry, soon: every caller has an answer for Redis being away (a 503, a panel computed
# again, a budget not kept), and redis-py's default of ten retries with growing back-offs would
# hold a request for half a minute or more when Redis hangs.
RETRY = Retry(ExponentialBackoff(cap=0.2, base=0.05), 1)


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2, retry=RETRY)


def key(*parts: object) -> str:
    """A key of perfdash's own, under REDIS_KEY_PREFIX."""
    return settings.REDIS_KEY_PREFIX + ":".join(map(str, parts))
