"""What the node agent's listeners share: the limits points are checked against, recording a
checked point, logging each distinct problem once, and the address family to bind."""

from __future__ import annotations

import logging
import socket

from collectors.client import Client
from collectors.protocol import Limits, Point

log = logging.getLogger("perfdash.collectors.agent")

# The server's limits, with a narrower time window than its 10 minutes ahead / 90 days back:
# node and server clocks may differ, and a point may wait in the buffer or the spool.
NODE_LIMITS = Limits(max_future_s=300.0, max_age_s=89 * 86400.0)
DISTINCT_PROBLEMS_LOGGED = 100


def record(client: Client, point: Point) -> None:
    ts, metric, value, tags, node, agent = point
    client.record(metric, value, tags, ts, node=node, agent=agent)


class OncePerProblem:
    """Logs each distinct problem once: a misbehaving sender repeats its mistake thousands of
    times a second. Bounded, since problems quote what senders send."""

    def __init__(self, limit: int = DISTINCT_PROBLEMS_LOGGED):
        self._seen: set[str] = set()
        self._limit = limit

    def warn(self, problem: str, example: str) -> None:
        if problem in self._seen or len(self._seen) >= self._limit:
            return
        self._seen.add(problem)
        log.warning("%s (logged once), e.g. %s", problem, example[:200])


def address_family(host: str) -> socket.AddressFamily:
    return socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)[0][0]
