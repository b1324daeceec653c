"""Peer outliers: agents whose statistic (a p95, a memory peak) lies far above their peers'.

Peers are the agents of the same node, or of the whole fleet. Among the peers with enough
points, the centre is the median and the spread the median absolute deviation scaled to a
standard deviation (1.4826 x MAD): robust, so the outliers themselves barely move either, and
scale-aware, so a tolerance of 5 means the same for milliseconds and for bytes. An agent is
`mads` spreads above the median; only the high side counts (slower, fatter). The MAD of a few
peers is itself noisy: among 10 to 100 alike peers, 0.18 % to 0.004 % of agents lie beyond 5
spreads by chance (3.5 spreads: 0.8 % to 0.1 %), so the default tolerance is 5.

Peers that all report nearly the same value have a MAD near zero, which would make any
trivial difference look extreme: the spread is at least `FLOOR` of the median, twice the
precision of a percentile read from the sketches. With fewer than `min_peers` peers no one is
judged: "not enough peers" is an answer, not an outlier.

The spread is the typical peer's, whose statistic rests on about the peers' median count of
points. An agent with fewer points strays further by chance (a percentile's sampling error
goes as 1/sqrt(count)): its spread is widened by sqrt(median count / its count), so an agent
that was away for part of the window, or serves few requests, is not flagged for its own
noise. An agent with as many points as its peers, or more, is judged by the peers' spread.

Besides the statistics of a window, an agent can be judged on its `growth`: how fast its mean
rises, as a share of itself per minute (`query.growth`). A leak is caught while young: five
minutes into it, an agent's memory is still within its own daily swings, but it already rises
faster than any of its peers' does. A share, so that a big agent's wider swings in bytes do not
stand out from small peers'. Peers' growths centre near zero, so the least spread is
`GROWTH_FLOOR` instead (at a tolerance of 5, growing 10 % an hour faster than the peers is the
least that is flagged). A growth's precision is not its count but its points' sum of squared
distances from their mean time (a slope's sampling error goes as 1/sqrt of it): an agent with
points in the last three minutes of a window of six has about a quarter of the precision its
count would say.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from perfdash.metrics import keys, query
from perfdash.metrics.scope import Scope

MAD_TO_SD = 1.4826
FLOOR = 0.02  # the least spread, as a fraction of the median
GROWTH_FLOOR = FLOOR / 60  # the least spread of a growth: 2 % an hour, per minute
PEERS = ("node", "fleet")
STATS = (*query.STATS, query.GROWTH)


@dataclass(frozen=True)
class Judged:
    agent: str
    node: str
    value: float
    count: int
    peer_median: float | None  # None: too few peers to judge
    peer_band: tuple[float, float] | None  # median -/+ tolerance x spread
    mads: float | None  # how many spreads above the median

    def outlier(self) -> bool:
        return self.peer_band is not None and self.value > self.peer_band[1]

    def as_json(self) -> dict:
        return {
            "agent": self.agent,
            "node": self.node,
            "value": self.value,
            "count": self.count,
            "peer_median": self.peer_median,
            "peer_band": list(self.peer_band) if self.peer_band else None,
            "mads": None if self.mads is None else round(self.mads, 2),
        }


class Peer(NamedTuple):
    value: float  # the agent's statistic
    count: int  # its points
    node: str
    precision: float | None = None  # what its sampling error goes as 1/sqrt of (None: count)


def judge(
    values: dict[str, Peer], tolerance: float, min_peers: int, min_count: int, by_node: bool, stat: str = ""
) -> list[Judged]:
    """Every agent with at least `min_count` points, from {agent: Peer} of the statistic `stat`."""
    groups: dict[str, list[str]] = {}
    for agent, peer in values.items():
        if peer.count >= min_count and math.isfinite(peer.value):
            groups.setdefault(peer.node if by_node else "", []).append(agent)
    out = []
    for members in groups.values():
        peers = [values[a] for a in members]
        if len(members) < min_peers:
            out += [
                Judged(a, p.node, p.value, p.count, None, None, None)
                for a, p in zip(members, peers, strict=True)
            ]
            continue
        x = np.array([p.value for p in peers])
        median = float(np.median(x))
        least = GROWTH_FLOOR if stat == query.GROWTH else FLOOR * abs(median)
        spread = max(MAD_TO_SD * float(np.median(np.abs(x - median))), least)
        precision = np.array([p.count if p.precision is None else p.precision for p in peers], float)
        own = spread * np.sqrt(np.maximum(1.0, np.median(precision) / precision))  # see the module's doc
        for a, p, its in zip(members, peers, own, strict=True):
            band = (median - tolerance * its, median + tolerance * its)
            mads = (p.value - median) / its if its > 0 else 0.0
            out.append(Judged(a, p.node, p.value, p.count, median, band, float(mads)))
    return out


def peer_values(
    metric: str, stat: str, window_s: int, node: str = "", now: float | None = None
) -> dict[str, Peer]:
    """Each agent's statistic over the window, within the node if given, else the fleet."""
    now = time.time() if now is None else now
    scope = Scope(node=node)
    if stat == query.GROWTH:
        stats = query.growth(metric, window_s, "agent", scope, now)
    else:
        stats = query.breakdown(
            metric, window_s, "agent", scope, now=now, percentiles=stat in query.PERCENTILES
        )
    node_of = {k.agent: k.node for k in keys.agents(metric, scope)}
    return {
        agent: Peer(value, int(row["count"]), node_of.get(agent, node), row.get("precision"))
        for agent, row in stats.items()
        if (value := row.get(stat)) is not None
    }


def find(
    metric: str,
    stat: str,
    window_s: int,
    peers: str = "node",
    tolerance: float = 5.0,
    min_peers: int = 5,
    min_count: int = 20,
    node: str = "",
    now: float | None = None,
) -> list[Judged]:
    """Every judged agent of the metric (outliers or not): `Judged.outlier()` says which."""
    values = peer_values(metric, stat, window_s, node, now)
    return judge(values, tolerance, min_peers, min_count, by_node=peers == "node", stat=stat)
