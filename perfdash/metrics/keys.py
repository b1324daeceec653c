"""Which rollup keys a read covers, from an index of all keys held in each process.

The live dashboard looks keys up a dozen times a second (each latency panel, a thousand
agents' memory, the headline counts); through the ORM that cost ~1.5 ms of CPU each. Keys are
never deleted, only added, and each transaction that adds some numbers them with the next
value of one counter row, which it locks first (store._create): such transactions commit in
the order of their numbers: once the counter reads N, every key numbered up to N is there to
read. A process that has read them asks the counter, and only when it has moved on for the
keys numbered above where it was (nearly never). A page's dozen reads share one look
(`pinned`): under load each cost 1-2 ms (bench/README.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

from django.db import connection

from perfdash.metrics.scope import Scope

# The counter lives in a table of its own, outside the ORM, so that emptying the key table
# (tests flush the database under long-running servers) never takes the count backwards.
NEXT_VERSION = (
    "INSERT INTO metrics_keyversion (id, version) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET version = metrics_keyversion.version + 1 RETURNING version"
)


class Key(NamedTuple):
    id: int
    metric: str
    node: str
    agent: str
    tag_key: str
    tag_value: str

    @property
    def level(self) -> str:
        return "agent" if self.agent else "node" if self.node else "fleet"


class _Index:
    """Immutable once published: readers on other threads iterate it while it is extended."""

    def __init__(self) -> None:
        self.version = -1
        self.exact: dict[tuple[str, str, str, str, str], int] = {}
        # (metric, tag key, level): the keys a breakdown looks through.
        self.groups: dict[tuple[str, str, str], list[Key]] = {}
        self.of_agent: dict[tuple[str, str], list[Key]] = {}
        self.metrics: frozenset[str] = frozenset()

    def extended(self, version: int, keys: list[Key]) -> _Index:
        new = _Index()
        new.version = version
        new.exact = {**self.exact, **{k[1:]: k.id for k in keys}}
        groups: dict[tuple[str, str, str], list[Key]] = {}
        of_agent: dict[tuple[str, str], list[Key]] = {}
        for k in keys:
            groups.setdefault((k.metric, k.tag_key, k.level), []).append(k)
            if k.agent:
                of_agent.setdefault((k.metric, k.agent), []).append(k)
        # New lists where keys are added: the published ones stay as they are.
        new.groups = {**self.groups, **{g: [*self.groups.get(g, ()), *ks] for g, ks in groups.items()}}
        new.of_agent = {
            **self.of_agent,
            **{a: [*self.of_agent.get(a, ()), *ks] for a, ks in of_agent.items()},
        }
        new.metrics = self.metrics | {k.metric for k in keys}
        return new


# Keys from before the counter have version 0 and no counter row. The counter also moves on
# when a worker finds all its keys made meanwhile by another: numbers without keys.
_COUNTER = "SELECT coalesce((SELECT version FROM metrics_keyversion WHERE id = 1), 0)"
_NEWER = (
    "SELECT id, metric, node, agent, tag_key, tag_value, version FROM metrics_rollupkey "
    "WHERE version > %s AND version <= %s"
)
_index = _Index()
_lock = threading.Lock()
_pinned: ContextVar[_Index | None] = ContextVar("pinned_keys", default=None)


@contextmanager
def pinned() -> Iterator[None]:
    """Within it, lookups in this context (and contexts copied from it) use the keys as they
    were when it began: for reads that together make one page."""
    token = _pinned.set(_refreshed())
    try:
        yield
    finally:
        _pinned.reset(token)


def _current() -> _Index:
    return _pinned.get() or _refreshed()


def _refreshed() -> _Index:
    global _index
    seen = _index.version
    with connection.cursor() as cur:
        cur.execute(_COUNTER)
        counted = cur.fetchone()[0]
        if counted <= seen:
            return _index
        cur.execute(_NEWER, [seen, counted])
        rows = cur.fetchall()
    with _lock:  # another thread may have moved the index on meanwhile
        index = _index
        if counted > index.version:
            _index = index.extended(counted, [Key(*r[:6]) for r in rows if r[6] > index.version])
    return _index


def forget() -> None:
    """Drop the index (tests: keys made in a rolled-back transaction must not be believed)."""
    global _index
    _index = _Index()


def known(metric: str) -> bool:
    return metric in _current().metrics


def ids(metric: str, scope: Scope) -> list[int]:
    """The keys holding the scope's points: the agent's (on its node, or on any node it ran
    on), else the node's or the fleet's; each narrowed to the scope's tag, if any."""
    return _ids(_current(), metric, scope.node, scope.agent, (scope.tag_key, scope.tag_value))


def _ids(index: _Index, metric: str, node: str, agent: str, tag: tuple[str, str]) -> list[int]:
    if not agent:
        key = index.exact.get((metric, node, "", *tag))
        return [] if key is None else [key]
    return [
        k.id for k in index.of_agent.get((metric, agent), []) if k[4:] == tag and (not node or k.node == node)
    ]


def members(metric: str, by: str, scope: Scope) -> list[tuple[int, str]]:
    """(key id, name) of a breakdown's keys: per node or per agent within the scope's tag
    (and node), or per value of the dimension tag `by` within the scope's node or agent."""
    if by == "agent":
        return [(k.id, k.agent) for k in agents(metric, scope)]
    index = _current()
    tag = (scope.tag_key, scope.tag_value)
    if by == "node":
        return [(k.id, k.node) for k in index.groups.get((metric, scope.tag_key, "node"), []) if k[4:] == tag]
    if scope.agent:
        keys = [k for k in index.of_agent.get((metric, scope.agent), []) if k.tag_key == by]
        return [(k.id, k.tag_value) for k in keys if not scope.node or k.node == scope.node]
    level = "node" if scope.node else "fleet"
    return [(k.id, k.tag_value) for k in index.groups.get((metric, by, level), []) if k.node == scope.node]


def agents(metric: str, scope: Scope) -> list[Key]:
    """The agent-level keys of a metric within the scope's tag and node."""
    tag = (scope.tag_key, scope.tag_value)
    return [
        k
        for k in _current().groups.get((metric, scope.tag_key, "agent"), [])
        if k[4:] == tag and (not scope.node or k.node == scope.node)
    ]


def every_metric(scope: Scope) -> list[int]:
    """The untagged keys of every metric within the scope's node or agent (a count of all
    points)."""
    index = _current()
    return [k for metric in index.metrics for k in _ids(index, metric, scope.node, scope.agent, ("", ""))]
