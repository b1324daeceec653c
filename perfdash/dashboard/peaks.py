"""Memory per agent for the live pages, kept in each web process.

The overview shows each agent's peak memory over the last five minutes; for a thousand agents
reading that from the store would be the longest part of every live update. Instead, workers
announce each committed batch's peaks per agent and minute (`perfdash.live.peaks`), and each
web process keeps them here, merged with a read of the store when it starts listening and
every minute after, so a lost announcement heals within a minute.
A peak is a maximum: a batch counted twice, once read and once announced, changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from perfdash.live.peaks import METRIC, Peak
from perfdash.metrics import query
from perfdash.metrics.scope import Scope

WINDOW_S = 300
KEEP_S = 2 * WINDOW_S  # minutes older than this are dropped when the store is read again


def read(now: float | None = None) -> list[Peak]:
    """Every agent's peaks per minute, from the store."""
    return query.peaks(METRIC, KEEP_S, Scope(), now=now)


class AgentPeaks:
    """Per node and agent, the peak of each recent minute, and the peak over the current
    window (kept up as peaks arrive, so a live update reads it without going over every
    agent's minutes). Announcements arrive on the event loop while live updates read on a
    worker thread: a lock keeps the two apart."""

    def __init__(self) -> None:
        self._minutes: dict[tuple[str, str], dict[int, float]] = {}
        self._bounds = (0, 0)  # the window [start, end) that _peak holds
        self._peak: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.complete = False  # holds every batch committed since this process started listening

    def add(self, peaks: Iterable[Peak]) -> None:
        with self._lock:
            start, end = self._bounds
            for node, agent, minute, value in peaks:
                who = (node, agent)
                minutes = self._minutes.setdefault(who, {})
                if value > minutes.get(minute, float("-inf")):
                    minutes[minute] = value
                    if start <= minute < end and value > self._peak.get(who, float("-inf")):
                        self._peak[who] = value

    def drop_before(self, minute: int) -> None:
        with self._lock:
            for who, minutes in list(self._minutes.items()):
                for m in [m for m in minutes if m < minute]:
                    del minutes[m]
                if not minutes:
                    del self._minutes[who]
            self._bounds = (0, 0)

    def per_agent(self, node: str = "", now: float | None = None) -> dict[str, float]:
        """Each agent's peak over the window (on one node, if given), as the store's read of
        the same window would give it."""
        bounds = query.window(WINDOW_S, now)
        out: dict[str, float] = {}
        with self._lock:
            if bounds != self._bounds:  # the window moved on (once a minute): look again
                start, end = self._bounds = bounds
                self._peak = {}
                for who, minutes in self._minutes.items():
                    values = [v for m, v in minutes.items() if start <= m < end]
                    if values:
                        self._peak[who] = max(values)
            for (n, agent), value in self._peak.items():
                if (not node or n == node) and value > out.get(agent, float("-inf")):
                    out[agent] = value
        return out
