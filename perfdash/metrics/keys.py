"""Which rollup keys a read covers, from an index of keys held in each process.

The live dashboard looks keys up a dozen times a second (each latency panel, the headline
counts, the nodes): too often to go through the ORM each time. Each transaction that adds
keys numbers them with the next value of one counter row, which it locks first
(store._create): such transactions commit in the order of their numbers: once the counter
reads N, every key numbered up to N is there to read. A process that has read them asks the
counter, and only when it has moved on for the keys numbered above where it was (nearly
never). A page's dozen reads share one look (`pinned`), so a page asks the counter once, not
a dozen times. Keys are removed only by garbage collection (gc.py), which then moves the
counter row's generation on: a process that sees a new generation loads its index anew.

The index holds every fleet- and node-level key, which the fleet and node pages read every
second. Agent-level keys are most of them (an agent's own key per metric and tag value), so it
holds only those of the AGENTS_KEPT agents looked up last, each read with one indexed query
when first asked for; a breakdown over every agent (`agents`) asks PostgreSQL each time. So
what a process holds does not grow with the number of agents the store has.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
# Agents whose keys each process keeps: more than the agent pages that update live at once
# (LIVE_MAX_VIEWS), so those never wait for a query.
AGENTS_KEPT = 256


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


class _Agents:
    """The keys of the agents looked up last, per metric, covering every key up to `version`.
    Shared by the index versions of one generation; changed only under `_lock`, and by
    replacing lists, never by changing one a reader may be walking."""

    def __init__(self) -> None:
        self.version = -1
        self.kept: OrderedDict[str, dict[str, list[Key]]] = OrderedDict()

    def get(self, agent: str) -> dict[str, list[Key]] | None:
        found = self.kept.get(agent)
        if found is not None:
            self.kept.move_to_end(agent)
        return found

    def keep(self, agent: str, of_agent: dict[str, list[Key]], version: int) -> None:
        """Keep an agent's keys as read up to `version`, unless newer keys were added since
        (which `add` did not give it): the next lookup reads them again."""
        if version == self.version:
            self.kept[agent] = of_agent
            while len(self.kept) > AGENTS_KEPT:
                self.kept.popitem(last=False)

    def add(self, version: int, keys: list[Key]) -> None:
        for k in keys:
            of_agent = self.kept.get(k.agent)
            if of_agent is not None:
                self.kept[k.agent] = {**of_agent, k.metric: [*of_agent.get(k.metric, ()), k]}
        self.version = version


class _Index:
    """Fleet- and node-level keys: immutable once published, since readers on other threads
    iterate it while it is extended. Agent-level keys are in `agents`."""

    def __init__(self, generation: int = 0, agents: _Agents | None = None) -> None:
        self.generation = generation
        self.version = -1
        self.exact: dict[tuple[str, str, str, str, str], int] = {}
        # (metric, tag key, level): the keys a breakdown by node or tag value looks through.
        self.groups: dict[tuple[str, str, str], list[Key]] = {}
        self.metrics: frozenset[str] = frozenset()
        self.agents = _Agents() if agents is None else agents

    def extended(self, version: int, keys: list[Key]) -> _Index:
        """The index with `keys` added (call with `_lock` held)."""
        new = _Index(self.generation, self.agents)
        new.version = version
        new.agents.add(version, [k for k in keys if k.agent])
        shared = [k for k in keys if not k.agent]
        if not shared:  # new agents' keys only: nothing to copy
            new.exact, new.groups, new.metrics = self.exact, self.groups, self.metrics
            return new
        new.exact = {**self.exact, **{k[1:]: k.id for k in shared}}
        groups: dict[tuple[str, str, str], list[Key]] = {}
        for k in shared:
            groups.setdefault((k.metric, k.tag_key, k.level), []).append(k)
        # New lists where keys are added: the published ones stay as they are.
        new.groups = {**self.groups, **{g: [*self.groups.get(g, ()), *ks] for g, ks in groups.items()}}
        new.metrics = self.metrics | {k.metric for k in shared}
        return new


# Keys from before the counter have version 0 and no counter row. The counter also moves on
# when a worker finds all its keys made meanwhile by another: numbers without keys.
_COUNTER = (
    "SELECT coalesce(max(version), 0), coalesce(max(generation), 0) FROM metrics_keyversion WHERE id = 1"
)
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
    held = _index
    with connection.cursor() as cur:
        cur.execute(_COUNTER)
        counted, generation = cur.fetchone()
        if generation != held.generation:  # keys were removed: read them all again
            held = _Index(generation)
        elif counted <= held.version:
            return held
        cur.execute(_NEWER, [held.version, counted])
        rows = cur.fetchall()
    with _lock:  # another thread may have moved the index on meanwhile
        index = _index
        if generation < index.generation:
            return index
        if generation > index.generation:  # then `rows` holds every key (held is new)
            index = _Index(generation)
        if counted > index.version:
            index = index.extended(counted, [Key(*r[:6]) for r in rows if r[6] > index.version])
        _index = index
    return _index


def forget() -> None:
    """Drop the index (tests: keys made in a rolled-back transaction must not be believed)."""
    global _index
    _index = _Index()


def known(metric: str) -> bool:
    return metric in _current().metrics


_COLUMNS = "SELECT id, metric, node, agent, tag_key, tag_value FROM metrics_rollupkey "
_OF_AGENT = _COLUMNS + "WHERE agent = %s AND version <= %s"
_AGENTS = _COLUMNS + "WHERE metric = %s AND agent <> '' AND tag_key = %s AND tag_value = %s AND version <= %s"


def _of_agent(index: _Index, agent: str) -> dict[str, list[Key]]:
    """An agent's keys per metric, on every node it ran on."""
    with _lock:
        found = index.agents.get(agent)
    if found is not None:
        return found
    with connection.cursor() as cur:
        cur.execute(_OF_AGENT, [agent, index.version])
        rows = cur.fetchall()
    of_agent: dict[str, list[Key]] = {}
    for row in rows:
        of_agent.setdefault(row[1], []).append(Key(*row))
    with _lock:
        index.agents.keep(agent, of_agent, index.version)
    return of_agent


def nodes_of(agent: str) -> list[str]:
    """The nodes an agent ran on, the one with most of its series first."""
    counts: dict[str, int] = {}
    for of_metric in _of_agent(_current(), agent).values():
        for k in of_metric:
            counts[k.node] = counts.get(k.node, 0) + 1
    return sorted(counts, key=lambda n: (-counts[n], n))


def ids(metric: str, scope: Scope) -> list[int]:
    """The keys holding the scope's points: the agent's (on its node, or on any node it ran
    on), else the node's or the fleet's; each narrowed to the scope's tag, if any."""
    return _ids(_current(), metric, scope.node, scope.agent, (scope.tag_key, scope.tag_value))


def _ids(index: _Index, metric: str, node: str, agent: str, tag: tuple[str, str]) -> list[int]:
    if not agent:
        key = index.exact.get((metric, node, "", *tag))
        return [] if key is None else [key]
    return [
        k.id for k in _of_agent(index, agent).get(metric, ()) if k[4:] == tag and (not node or k.node == node)
    ]


def members(metric: str, by: str, scope: Scope) -> list[tuple[int, str]]:
    """(key id, name) of a breakdown's keys: per node or per agent within the scope's tag
    (and node, and agent), or per value of the dimension tag `by` within the scope's node or
    agent."""
    if by == "agent":
        return [(k.id, k.agent) for k in agents(metric, scope)]
    index = _current()
    tag = (scope.tag_key, scope.tag_value)
    if by == "node":
        return [(k.id, k.node) for k in index.groups.get((metric, scope.tag_key, "node"), []) if k[4:] == tag]
    if scope.agent:
        keys = [k for k in _of_agent(index, scope.agent).get(metric, ()) if k.tag_key == by]
        return [(k.id, k.tag_value) for k in keys if not scope.node or k.node == scope.node]
    level = "node" if scope.node else "fleet"
    return [(k.id, k.tag_value) for k in index.groups.get((metric, by, level), []) if k.node == scope.node]


def agents(metric: str, scope: Scope) -> list[Key]:
    """The agent-level keys of a metric within the scope's tag, node and agent: read from
    PostgreSQL (one indexed query), as the index does not hold every agent's."""
    index = _current()
    if scope.agent:
        found = _of_agent(index, scope.agent).get(metric, ())
    else:
        with connection.cursor() as cur:
            cur.execute(_AGENTS, [metric, scope.tag_key, scope.tag_value, index.version])
            found = [Key(*row) for row in cur.fetchall()]
    tag = (scope.tag_key, scope.tag_value)
    return [k for k in found if k[4:] == tag and (not scope.node or k.node == scope.node)]


def every_metric(scope: Scope) -> list[int]:
    """The untagged keys of every metric within the scope's node or agent (a count of all
    points)."""
    index = _current()
    if scope.agent:
        of_agent = _of_agent(index, scope.agent)
        return [
            k.id
            for ks in of_agent.values()
            for k in ks
            if not k.tag_key and (not scope.node or k.node == scope.node)
        ]
    return [k for metric in index.metrics for k in _ids(index, metric, scope.node, "", ("", ""))]
