"""Cohorts drawn from known distributions, as the cells `compare()` takes."""

from __future__ import annotations

import numpy as np

from perfdash.compare.compare import Cells
from perfdash.metrics.rollup import group_label, group_values

MEDIAN_MS, SIGMA = 900.0, 0.45  # log-normal, like the simulator's response times


def cells(
    values: np.ndarray,
    unit: np.ndarray,
    ts: np.ndarray,
    t0: int = 0,
    t1: int = 3600,
    slot_s: int = 300,
    names: list[str] | None = None,
) -> Cells:
    """Points (value, agent index, Unix seconds) in [t0, t1) as cells of (agent, block)."""
    names = names or [f"agent-{i}" for i in range(int(unit.max()) + 1 if len(unit) else 0)]
    g = group_values(group_label(unit.astype(np.int64), (ts // slot_s).astype(np.int64)), values)
    slots = np.arange(t0 // slot_s, (t1 - 1) // slot_s + 1)
    seconds = np.minimum((slots + 1) * slot_s, t1) - np.maximum(slots * slot_s, t0)
    minutes = len(np.unique((ts // 60).astype(np.int64)))
    return Cells(g, tuple(names), "agent", len(names), t0, t1, slot_s, slots, seconds.astype(float), minutes)


def cohort(
    rng: np.random.Generator,
    n: int,
    agents: np.ndarray,
    factor: float = 1.0,
    agent_factor: np.ndarray | None = None,
    t0: int = 0,
    t1: int = 3600,
    slowdown: tuple[int, int, float] | None = None,
    names: list[str] | None = None,
) -> Cells:
    """`n` log-normal points from the given agents (indices), spread evenly over [t0, t1),
    each multiplied by `factor`, by its agent's `agent_factor` and, from `slowdown`'s start to
    its end, by its factor (an episode)."""
    unit = rng.choice(agents, n)
    ts = rng.uniform(t0, t1, n)
    values = MEDIAN_MS * factor * np.exp(SIGMA * rng.standard_normal(n))
    if agent_factor is not None:
        values *= agent_factor[unit]
    if slowdown is not None:
        start, end, by = slowdown
        values[(ts >= start) & (ts < end)] *= by
    return cells(
        values, unit, ts, t0, t1, names=names or [f"agent-{i}" for i in range(int(agents.max()) + 1)]
    )


def true_quantile(q: float) -> float:
    from scipy.stats import norm

    return float(MEDIAN_MS * np.exp(SIGMA * norm.ppf(q)))
