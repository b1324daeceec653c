"""The traffic model of the fleet simulator (see the package's docstring): the fleet, its
episodes, and every metric's points as columns and as v1 point dicts; and how a backfill is
sampled."""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from collectors.protocol import DEFAULT_LIMITS

MINUTE, HOUR, DAY = 60, 3600, 86400
MAX_BATCH_POINTS = DEFAULT_LIMITS.max_points  # the server's default INGEST_MAX_POINTS
# The server refuses points older than its rollup retention; a day less leaves time to send
# the backfill, and room for clocks that differ.
MAX_BACKFILL_S = DEFAULT_LIMITS.max_age_s - DAY
BACKFILL_BUDGET = 3_000_000  # points; the automatic backfill step keeps a backfill under this
NODE_AGENT = "collector"  # the agent name of node-level gauges

REQUESTS_PER_S = 0.25  # per agent, averaged over a day
BUSIEST_HOUR = 15  # UTC
DAILY_SWING = 0.5  # load = mean * (1 ± swing): 3x between afternoon and night
GROWTH_PER_DAY = 1.03
AWAY_SHORTEST, AWAY_LONGEST = 2 * MINUTE, 20 * MINUTE

RESPONSE_MEDIAN_MS, RESPONSE_SIGMA = 900.0, 0.45  # p95 ~1.9 s, just under the 2 s target
TOOL_CALLS, LLM_CALLS, MEMORY_OPS, CACHE_LOOKUPS = 1.5, 1.5, 2.0, 1.0  # per request
TOOL_TIMEOUT_MS = 30_000.0
TOOL_HANG_CHANCE = 0.001  # tools that hang until the timeout, on top of the slow tail
LLM_FAILURE_CHANCE = 0.005
# A lookup caches a tool's result for a model's call: deterministic tools hit most, the
# web and code least (about 0.8 over all lookups).
CACHE_HIT_BY_TOOL = np.array([0.97, 0.9, 0.85, 0.65, 0.7, 0.75])
SLOW_TOOL_FACTOR, SLOW_PROVIDER_FACTOR, SLOW_PROVIDER_FAILURES = 5.0, 4.0, 10.0
LEAK_BYTES = 160e6  # over the leak's 1-3 h: well past 100 MB from any agent's 30-70 MB
LEAK_S = 2 * HOUR  # a leak placed by `simulate --leak`
# Points per agent per tick when a tick holds one request: its events and a memory gauge.
POINTS_PER_REQUEST_TICK = 1 + TOOL_CALLS + 3 * LLM_CALLS + MEMORY_OPS + CACHE_LOOKUPS + 1


@dataclass(frozen=True)
class Kinds:
    """The kinds of one call (tools, models, memory ops): their tags, and per kind a
    lognormal latency (median, sigma of the log) and a share of the calls."""

    tags: tuple[dict[str, str], ...]
    median_ms: np.ndarray
    sigma: np.ndarray
    share: np.ndarray

    @classmethod
    def of(cls, rows: list[tuple[dict[str, str], float, float, float]]) -> Kinds:
        tags, median, sigma, share = zip(*rows, strict=True)
        return cls(tags, np.array(median), np.array(sigma), np.array(share))

    def names(self, key: str) -> list[str]:
        return [t[key] for t in self.tags]


TOOLS = Kinds.of(
    [
        ({"tool": "calculator"}, 5.0, 0.5, 0.20),
        ({"tool": "file_read"}, 25.0, 0.6, 0.15),
        ({"tool": "sql_query"}, 120.0, 0.7, 0.10),
        ({"tool": "web_search"}, 1200.0, 0.6, 0.30),
        ({"tool": "browser"}, 2500.0, 0.6, 0.10),
        ({"tool": "code_exec"}, 4000.0, 0.8, 0.15),
    ]
)
MODELS = Kinds.of(
    [
        ({"provider": "acme", "model": "m-large"}, 2500.0, 0.5, 0.30),
        ({"provider": "acme", "model": "m-small"}, 700.0, 0.4, 0.30),
        ({"provider": "globex", "model": "g-pro"}, 1800.0, 0.5, 0.25),
        ({"provider": "initech", "model": "i-fast"}, 400.0, 0.4, 0.15),
    ]
)
MODEL_TOKENS = np.array([1500.0, 600.0, 1200.0, 400.0])  # median tokens per call
PROVIDERS = tuple(dict.fromkeys(MODELS.names("provider")))
MODEL_PROVIDER = np.array([PROVIDERS.index(p) for p in MODELS.names("provider")])
# p99 of writes ~40 ms, well under the 100 ms target
OPS = Kinds.of([({"op": "read"}, 6.0, 0.5, 0.7), ({"op": "write"}, 12.0, 0.5, 0.3)])
TIMEOUT_TAGS = tuple({"error": "timeout", **t} for t in TOOLS.tags)
FAILURE_TAGS = tuple({"error": "provider_error", **t} for t in MODELS.tags)
# Tokens by type, as OpenTelemetry's gen_ai.token.type: a call's prompt is most of its tokens.
INPUT_SHARE = 0.75
INPUT_TAGS = tuple({"type": "input", **t} for t in MODELS.tags)
OUTPUT_TAGS = tuple({"type": "output", **t} for t in MODELS.tags)
CACHE_TAGS = tuple({**tool, **model} for tool in TOOLS.tags for model in MODELS.tags)


@dataclass(frozen=True)
class _Schedule:
    kind: str
    slot_s: int  # at most one episode per UTC-aligned slot of this length
    chance: float
    shortest_s: float
    longest_s: float


SCHEDULES = (
    _Schedule("slow_tool", 6 * HOUR, 0.5, 20 * MINUTE, 60 * MINUTE),
    _Schedule("slow_provider", 8 * HOUR, 0.5, 15 * MINUTE, 45 * MINUTE),
    _Schedule("memory_leak", 12 * HOUR, 0.7, 1 * HOUR, 3 * HOUR),
)
# Streams of the seeded generator, so each random choice has its own reproducible source.
_TRAITS, _EPISODES, _AWAY, _POINTS = range(4)


@dataclass(frozen=True)
class Episode:
    kind: str  # "slow_tool", "slow_provider" or "memory_leak"
    start: float
    end: float
    target: str  # the tool, provider or agent it hits
    index: int  # that target's index in TOOLS, PROVIDERS or the fleet's agents

    def covers(self, ts: np.ndarray) -> np.ndarray:
        return (ts >= self.start) & (ts < self.end)


class Window(NamedTuple):
    """Simulated time [t0, t1), one tick per `step` seconds, keeping `sample` of the events."""

    t0: float
    t1: float
    step: float = 1.0
    sample: float = 1.0


@dataclass
class Group:
    """Points of one metric, as columns, ordered by node (agents sit on nodes in blocks)."""

    metric: str
    node: np.ndarray  # node index per point
    agent: np.ndarray  # agent index per point; the fleet's agent count means NODE_AGENT
    ts: np.ndarray
    value: np.ndarray
    tag: np.ndarray | None = None  # index into `tags` per point
    tags: tuple[dict[str, str], ...] | None = None


class Fleet:
    """A simulated fleet: `agents` agents named agent-0… on `nodes` nodes named node-0….
    Everything it produces is a function of the seed and the times asked for.

    A `version` tags every point. `variants` split the agents among them by index (agent i
    runs variant i mod their number, so every node runs each), tag their points, and
    `slowdown` makes a variant's latencies (responses, tools, LLM calls, memory ops) slower
    by a factor, e.g. {"b": 1.15}; naming the version, every agent's: {"1.3.0": 1.1}; naming an
    agent, that agent's (an outlier among its peers): {"agent-7": 1.6}. `episodes`, if given,
    replaces the seed's random slow-tool, slow-provider and memory-leak episodes: [] for none,
    or episodes at known times (for measuring what detects them). `also` adds episodes to
    either (a demo's leak that starts minutes after it does)."""

    def __init__(
        self,
        agents: int,
        nodes: int,
        seed: int = 0,
        full_at: float | None = None,
        *,
        version: str = "",
        variants: Sequence[str] = (),
        slowdown: Mapping[str, float] | None = None,
        episodes: Sequence[Episode] | None = None,
        also: Sequence[Episode] = (),
    ):
        if not 1 <= nodes <= agents:
            raise ValueError("need at least one agent per node")
        slowdown = dict(slowdown or {})
        names = [f"agent-{i}" for i in range(agents)]
        unknown = sorted(set(slowdown) - set(variants) - {version} - set(names))
        if unknown:
            raise ValueError(
                f"a slowdown names neither a variant, the version nor an agent: {', '.join(unknown)}"
            )
        self.agents, self.nodes, self.seed = agents, nodes, seed
        self.full_at = time.time() if full_at is None else full_at
        self.node_of = np.arange(agents) * nodes // agents
        self.node_start = np.searchsorted(self.node_of, np.arange(nodes))
        self.agent_names = [f"agent-{i}" for i in range(agents)]
        self.node_names = [f"node-{j}" for j in range(nodes)]
        self._labels = [*self.agent_names, NODE_AGENT]
        rng = np.random.default_rng([seed, _TRAITS])
        self.join_rank = rng.permutation(agents)  # who is in the fleet as it grows
        self.activity = rng.lognormal(-0.045, 0.3, agents)  # mean 1
        self.memory_base = rng.uniform(30e6, 70e6, agents)
        self.memory_period = rng.uniform(2 * HOUR, 8 * HOUR, agents)
        self.memory_phase = rng.uniform(0, 2 * np.pi, agents)
        self.version, self.variants, self.slowdown = version, tuple(variants), slowdown
        self.scheduled = None if episodes is None else tuple(episodes)
        self.also = tuple(also)
        self.variant_of = np.arange(agents) % max(1, len(self.variants))
        self._release_tags, self._release_of = self._release(version)
        self.latency_factor = None
        if slowdown:
            of_variant = np.array([slowdown.get(v, 1.0) for v in self.variants] or [1.0])
            of_agent = np.array([slowdown.get(name, 1.0) for name in names])
            self.latency_factor = of_variant[self.variant_of] * slowdown.get(version, 1.0) * of_agent

    def _release(self, version: str) -> tuple[tuple[dict[str, str], ...] | None, np.ndarray | None]:
        """The tag sets of the version and variants (None without either), and the one each
        agent's points carry (the last entry: the node collector's, which runs no variant)."""
        if not version and not self.variants:
            return None, None
        base = {"version": version} if version else {}
        sets = (*({**base, "variant": v} for v in self.variants), base)
        own = self.variant_of if self.variants else np.zeros(self.agents, np.int64)
        return sets, np.append(own, len(sets) - 1)

    # --- the schedule ----------------------------------------------------------------------

    def size_at(self, times: np.ndarray | float) -> np.ndarray:
        """How many agents the fleet has at `times` (before today's departures)."""
        return self.agents * GROWTH_PER_DAY ** np.minimum(0.0, (np.asarray(times) - self.full_at) / DAY)

    def load(self, times: np.ndarray) -> np.ndarray:
        """Requests per second of an average agent at `times`."""
        hour = (times % DAY) / HOUR
        return REQUESTS_PER_S * (1 + DAILY_SWING * np.cos(2 * np.pi * (hour - BUSIEST_HOUR) / 24))

    def episodes(self, t0: float, t1: float) -> list[Episode]:
        """The episodes that overlap [t0, t1), by start time: the seed's random schedule, or
        exactly those the fleet was given (none, for a run with no episodes); and `also`'s."""
        found = [e for e in self.also if e.start < t1 and e.end > t0]
        if self.scheduled is not None:
            found += [e for e in self.scheduled if e.start < t1 and e.end > t0]
            return sorted(found, key=lambda e: e.start)
        for i, schedule in enumerate(SCHEDULES):
            for slot in range(int(t0 // schedule.slot_s), int(t1 // schedule.slot_s) + 1):
                episode = self._episode(i, schedule, slot)
                if episode is not None and episode.start < t1 and episode.end > t0:
                    found.append(episode)
        return sorted(found, key=lambda e: e.start)

    def _episode(self, i: int, schedule: _Schedule, slot: int) -> Episode | None:
        rng = np.random.default_rng([self.seed, _EPISODES, i, slot])
        if rng.random() >= schedule.chance:
            return None
        length = rng.uniform(schedule.shortest_s, schedule.longest_s)
        start = slot * schedule.slot_s + rng.uniform(0, schedule.slot_s - length)
        if schedule.kind == "slow_tool":
            index = int(rng.integers(len(TOOLS.tags)))
            return Episode(schedule.kind, start, start + length, TOOLS.names("tool")[index], index)
        if schedule.kind == "slow_provider":
            index = int(rng.integers(len(PROVIDERS)))
            return Episode(schedule.kind, start, start + length, PROVIDERS[index], index)
        members = np.flatnonzero(self.join_rank < self.size_at(start))
        if not members.size:
            return None
        index = int(rng.choice(members))
        return Episode(schedule.kind, start, start + length, self.agent_names[index], index)

    def alive(self, times: np.ndarray, episodes: list[Episode] | None = None) -> np.ndarray:
        """(agents, ticks): which agents are live at `times`."""
        alive = self.join_rank[:, None] < self.size_at(times)[None, :]
        days = np.floor(times / DAY)
        for day in np.unique(days):
            away_from, away_until = self._away(int(day))
            cols = np.flatnonzero(days == day)
            t = times[cols][None, :]
            alive[:, cols] &= (t < away_from[:, None]) | (t >= away_until[:, None])
        if episodes is None:
            episodes = self.episodes(float(times[0]), float(times[-1]) + 1)
        for e in episodes:
            if e.kind == "memory_leak":  # the leaking agent stays up until its episode ends
                alive[e.index, e.covers(times)] = True
        return alive

    def _away(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """When each agent is gone on that UTC day: a redeploy or a crash, then it rejoins."""
        rng = np.random.default_rng([self.seed, _AWAY, day])
        start = day * DAY + rng.uniform(0, DAY - AWAY_LONGEST, self.agents)
        return start, start + rng.uniform(AWAY_SHORTEST, AWAY_LONGEST, self.agents)

    # --- the points ------------------------------------------------------------------------

    def groups(self, t0: float, t1: float, step: float = 1.0, sample: float = 1.0) -> list[Group]:
        """All points of [t0, t1) with one tick per `step` seconds, as columns. `sample`
        (0-1] keeps that share of the events; counter points then count 1/sample events."""
        ticks = _Ticks(self, t0, t1, step, sample)
        return [
            *_responses(ticks),
            *_tool_calls(ticks),
            *_llm_calls(ticks),
            *_memory_ops(ticks),
            *_cache_lookups(ticks),
            _memory(ticks),
            _active_agents(ticks),
        ]

    def node_points(self, groups: list[Group]) -> list[list[dict]]:
        """The groups as v1 point dicts, one list per node."""
        out: list[list[dict]] = [[] for _ in range(self.nodes)]
        with _gc_paused():
            for g in groups:
                for j, points in self._dicts_by_node(g):
                    out[j] += points
        return out

    def _dicts_by_node(self, g: Group) -> Iterator[tuple[int, list[dict]]]:
        bounds = np.searchsorted(g.node, np.arange(self.nodes + 1)).tolist()
        ts, agent, value = g.ts.tolist(), g.agent.tolist(), g.value.tolist()
        tag, table = self._tagging(g)
        for j, node in enumerate(self.node_names):
            cut = slice(bounds[j], bounds[j + 1])
            if cut.start == cut.stop:
                continue
            tagging = (tag[cut], table) if tag is not None else None
            yield j, _dicts(g.metric, node, self._labels, ts[cut], agent[cut], value[cut], tagging)

    def _tagging(self, g: Group) -> tuple[list[int] | None, tuple[dict[str, str], ...] | None]:
        """Per point an index into a table of tag dicts (None: the group's points carry none)."""
        sets = self._release_tags
        if sets is None:
            return (g.tag.tolist(), g.tags) if g.tag is not None else (None, None)
        of = self._release_of[g.agent]
        if g.tag is None:
            return of.tolist(), sets
        table = tuple({**kind, **release} for release in sets for kind in g.tags)
        return (of * len(g.tags) + g.tag).tolist(), table

    def points(self, t0: float, t1: float, step: float = 1.0, sample: float = 1.0) -> list[dict]:
        """All points of [t0, t1) as v1 point dicts."""
        return [p for node in self.node_points(self.groups(t0, t1, step, sample)) for p in node]

    def batches(
        self, t0: float, t1: float, step: float = 1.0, sample: float = 1.0, size: int = MAX_BATCH_POINTS
    ) -> Iterator[list[dict]]:
        """The points of [t0, t1) as batches of one node's points, at most `size` each."""
        for points in self.node_points(self.groups(t0, t1, step, sample)):
            for i in range(0, len(points), size):
                yield points[i : i + size]


class _Ticks:
    """The ticks of one window of `Fleet.groups`, and what its metrics share about them."""

    def __init__(self, fleet: Fleet, t0: float, t1: float, step: float, sample: float):
        self.fleet = fleet
        self.times = t0 + step * np.arange(math.ceil((t1 - t0) / step))
        self.width = np.minimum(step, t1 - self.times)  # the last tick may be cut short
        self.weight = 1.0 / sample
        self.rng = np.random.default_rng([fleet.seed, _POINTS, round(t0 * 1000), round(step * 1000)])
        self.episodes = fleet.episodes(t0, t1)
        self.alive = fleet.alive(self.times, self.episodes)
        per_tick = fleet.load(self.times) * self.width * sample
        self.requests = self.alive * fleet.activity[:, None] * per_tick[None, :]

    def events(self, per_request: float) -> tuple[np.ndarray, np.ndarray]:
        """Agent and ts of events that happen `per_request` times per request on average,
        ordered by agent (and so by node)."""
        counts = self.rng.poisson(self.requests * per_request).ravel()
        agent, tick = np.divmod(np.repeat(np.arange(counts.size), counts), self.times.size)
        ts = self.times[tick] + self.rng.random(tick.size) * self.width[tick]
        # Whole milliseconds, rounded down: rounded to nearest, an event of the window's last
        # half-millisecond would fall in the next window (and a rollup's next minute or hour).
        return agent, np.floor(ts * 1000) / 1000

    def during(self, kind: str, ts: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
        """Per point: is an episode of `kind` on then (and hitting the point's `target`, the
        index of its tool or provider, if given)?"""
        hit = np.zeros(ts.size, dtype=bool)
        for e in self.episodes:
            if e.kind == kind:
                hit |= e.covers(ts) if target is None else e.covers(ts) & (target == e.index)
        return hit

    def choose(self, kinds: Kinds, n: int) -> np.ndarray:
        """A kind per point, by their shares."""
        return self.rng.choice(len(kinds.tags), n, p=kinds.share)

    def latency(self, kinds: Kinds, kind: np.ndarray) -> np.ndarray:
        return self.lognormal(kinds.median_ms[kind], kinds.sigma[kind], kind.size)

    def slower(self, agent: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Latencies of these agents' events as their version's and variants' slowdowns make
        them."""
        factor = self.fleet.latency_factor
        return value if factor is None else value * factor[agent]

    def lognormal(self, median: np.ndarray | float, sigma: np.ndarray | float, n: int) -> np.ndarray:
        return median * np.exp(sigma * self.rng.standard_normal(n))

    def group(
        self,
        metric: str,
        agent: np.ndarray,
        ts: np.ndarray,
        value: np.ndarray,
        tag: np.ndarray | None = None,
        tags: tuple[dict[str, str], ...] | None = None,
        decimals: int = 2,
    ) -> Group:
        node = self.fleet.node_of[agent]
        return Group(metric, node, agent, ts, np.round(value, decimals), tag, tags)

    def counter(
        self,
        metric: str,
        agent: np.ndarray,
        ts: np.ndarray,
        tag: np.ndarray | None = None,
        tags: tuple[dict[str, str], ...] | None = None,
        events: np.ndarray | float = 1.0,
    ) -> Group:
        """One point per event (per sampled event, counting the ones it stands for)."""
        return self.group(metric, agent, ts, np.broadcast_to(events * self.weight, ts.shape), tag, tags)


def _responses(w: _Ticks) -> list[Group]:
    agent, ts = w.events(1.0)
    # An answer waits for its tools and models: episodes slow every agent's responses.
    slowdown = 1 + 0.6 * w.during("slow_tool", ts) + 0.8 * w.during("slow_provider", ts)
    value = w.slower(agent, w.lognormal(RESPONSE_MEDIAN_MS, RESPONSE_SIGMA, ts.size) * slowdown)
    return [w.group("agent_response_ms", agent, ts, value)]


def _tool_calls(w: _Ticks) -> list[Group]:
    agent, ts = w.events(TOOL_CALLS)
    tool = w.choose(TOOLS, ts.size)
    value = w.latency(TOOLS, tool) * np.where(w.during("slow_tool", ts, tool), SLOW_TOOL_FACTOR, 1.0)
    value = w.slower(agent, value)
    value[w.rng.random(ts.size) < TOOL_HANG_CHANCE] = TOOL_TIMEOUT_MS
    value = np.minimum(value, TOOL_TIMEOUT_MS)
    timeout = value >= TOOL_TIMEOUT_MS
    return [
        w.group("tool_execution_ms", agent, ts, value, tool, TOOLS.tags),
        w.counter("errors_total", agent[timeout], ts[timeout], tool[timeout], TIMEOUT_TAGS),
    ]


def _llm_calls(w: _Ticks) -> list[Group]:
    agent, ts = w.events(LLM_CALLS)
    model = w.choose(MODELS, ts.size)
    slow = w.during("slow_provider", ts, MODEL_PROVIDER[model])
    value = w.slower(agent, w.latency(MODELS, model) * np.where(slow, SLOW_PROVIDER_FACTOR, 1.0))
    tokens = np.round(w.lognormal(MODEL_TOKENS[model], 0.5, ts.size))
    failure = LLM_FAILURE_CHANCE * np.where(slow, SLOW_PROVIDER_FAILURES, 1.0)
    failed = w.rng.random(ts.size) < failure
    return [
        w.group("llm_call_ms", agent, ts, value, model, MODELS.tags),
        w.counter("tokens_total", agent, ts, model, INPUT_TAGS, np.round(tokens * INPUT_SHARE)),
        w.counter("tokens_total", agent, ts, model, OUTPUT_TAGS, tokens - np.round(tokens * INPUT_SHARE)),
        w.counter("errors_total", agent[failed], ts[failed], model[failed], FAILURE_TAGS),
    ]


def _memory_ops(w: _Ticks) -> list[Group]:
    agent, ts = w.events(MEMORY_OPS)
    op = w.choose(OPS, ts.size)
    value = w.slower(agent, w.latency(OPS, op))
    return [w.group("memory_op_ms", agent, ts, value, op, OPS.tags, decimals=3)]


def _cache_lookups(w: _Ticks) -> list[Group]:
    agent, ts = w.events(CACHE_LOOKUPS)
    tool, model = w.choose(TOOLS, ts.size), w.choose(MODELS, ts.size)
    kind = tool * len(MODELS.tags) + model
    hit = w.rng.random(ts.size) < CACHE_HIT_BY_TOOL[tool]
    return [
        w.counter("cache_hits_total", agent[hit], ts[hit], kind[hit], CACHE_TAGS),
        w.counter("cache_misses_total", agent[~hit], ts[~hit], kind[~hit], CACHE_TAGS),
    ]


def _memory(w: _Ticks) -> Group:
    f = w.fleet
    agent, tick = np.nonzero(w.alive)
    ts = w.times[tick]
    wave = 1 + 0.08 * np.sin(2 * np.pi * ts / f.memory_period[agent] + f.memory_phase[agent])
    value = f.memory_base[agent] * wave * (1 + 0.005 * w.rng.standard_normal(ts.size))
    for e in w.episodes:
        if e.kind == "memory_leak":
            leaking = (agent == e.index) & e.covers(ts)
            value[leaking] += LEAK_BYTES * (ts[leaking] - e.start) / (e.end - e.start)
    return w.group("agent_memory_bytes", agent, ts, value, decimals=0)


def _active_agents(w: _Ticks) -> Group:
    f = w.fleet
    counts = np.add.reduceat(w.alive.astype(np.int64), f.node_start, axis=0)  # (nodes, ticks)
    node, tick = np.indices(counts.shape).reshape(2, -1)
    agent = np.full(node.size, f.agents)
    return Group("active_agents", node, agent, w.times[tick], counts.ravel().astype(np.float64))


def _dicts(
    metric: str,
    node: str,
    labels: list[str],
    ts: list[float],
    agent: list[int],
    value: list[float],
    tagging: tuple[list[int], tuple[dict[str, str], ...]] | None,
) -> list[dict]:
    if tagging is None:
        return [
            {"ts": t, "node": node, "agent": labels[a], "metric": metric, "value": v}
            for t, a, v in zip(ts, agent, value, strict=True)
        ]
    tag, tags = tagging
    return [
        {"ts": t, "node": node, "agent": labels[a], "metric": metric, "value": v, "tags": tags[k]}
        for t, a, v, k in zip(ts, agent, value, tag, strict=True)
    ]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Hundreds of thousands of new dicts, none in a cycle: without this the cyclic collector
    # runs over and over while they are built, freeing nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- the backfill ----------------------------------------------------------------------------


def backfill_step(agents: int, seconds: float) -> float:
    """One minute, or the whole number of minutes that keeps the backfill within budget."""
    ticks_allowed = BACKFILL_BUDGET / (agents * POINTS_PER_REQUEST_TICK)
    return MINUTE * max(1, math.ceil(seconds / MINUTE / ticks_allowed))


def backfill_windows(
    fleet: Fleet, end: float, seconds: float, step: float, batch_size: int = MAX_BATCH_POINTS
) -> Iterator[Window]:
    """The backfill of [end - seconds, end) as the windows it is generated in: about one
    request per agent per tick, and windows small enough for one batch per node, mostly."""
    sample = min(1.0, 1.0 / (REQUESTS_PER_S * step))
    per_node_tick = fleet.agents / fleet.nodes * POINTS_PER_REQUEST_TICK
    ticks = max(1, int(0.8 * batch_size / per_node_tick))
    for t0 in np.arange(end - seconds, end, ticks * step).tolist():
        yield Window(t0, min(t0 + ticks * step, end), step, sample)
