"""Comparing one metric between two cohorts: each cohort's statistics and the relative
difference of each, with confidence intervals, and a verdict.

Pure: it takes each cohort's points as cells (below) and returns plain data; `cohorts.py`
reads the cells from the rollups.

Points close in time are not independent (load follows a daily cycle, an episode slows every
agent for a while), nor are the points of one agent (each behaves in its own way): counted as
independent samples, a million points make any trivial difference significant. So a cohort
arrives as cells, each the sketch of its points in one unit (an agent, or a node when there
are too many agents to read one by one) and one time block, and the spread of a statistic is
measured by resampling clusters of cells, never points:

- three bootstraps with Exp(1) weights (Bayesian-bootstrap weights, so merged sketches stay
  sketches): one weighs units, one time blocks, one single cells. Weighted sketches are merged
  and their quantiles read, for all replicates at once (a matrix product of weights and the
  cells' bin counts). A unit, block or cell that both cohorts have gets the same weight in
  both: an A/B comparison over the same hours is paired by time (an episode slows both
  alike), cohorts on the same agents are paired by agent, and cohorts on different agents are
  resampled independently, so the agents' own differences widen the interval instead of
  deciding the verdict.
- Units and blocks are crossed, and each of the two one-way bootstraps also counts the
  points' own noise. Their variances are combined as for a two-way crossed random-effects
  design: between units + between blocks + within cells, the last estimated from the cell
  bootstrap (the "pigeonhole" bootstrap, which weighs cells by unit x block, counts that
  noise three times over and so loses most of its power on small cohorts).
- Few clusters understate a bootstrap's spread: each between-cluster part is scaled by
  (n + 1)/(n - 1) for n clusters (the Bayesian bootstrap's bias), and the interval is
  Student's t on the log scale with Welch-Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit

from perfdash.metrics.rollup import Groups, split_label
from perfdash.metrics.sketch import BASE, GAMMA

QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
STATS = ("mean", *QUANTILES)
COUNTER_STATS = ("rate",)
SLOWER, FASTER, NO_CHANGE, INSUFFICIENT = "slower", "faster", "no_change", "insufficient_data"
PRECISION_NOTE = (
    "Quantiles are read from sketches that place every value within 0.5 %, so each is within 1 % "
    "of exact before its interval; counts, means and rates are exact."
)
# Below this many agents of its own, a cohort's intervals are wide (t with few degrees of
# freedom): a note says why.
FEW_UNITS = 5


@dataclass
class Cells:
    """One cohort's points as cells of (unit, time block)."""

    groups: Groups  # one summary per cell, labelled unit index << 32 | block (`rollup.group_label`)
    units: tuple[str, ...]  # the units' names, by index
    level: str  # what a unit is: "agent" or "node"
    agents: int  # agents in the cohort (the units, or the agents of the units' nodes)
    start: int  # the time range, Unix seconds
    end: int
    slot_s: int  # block length: the block of a time t is t // slot_s
    slots: np.ndarray  # every block the time range touches
    seconds: np.ndarray  # per block of `slots`: seconds of the range in it that have passed
    minutes: int  # minutes with points (at least: a row of a whole hour counts as one)

    @property
    def count(self) -> int:
        return int(self.groups.count.sum())


@dataclass(frozen=True)
class Options:
    stats: tuple[str, ...] = STATS  # the statistics to compare
    stat: str = "p95"  # the statistic of the top-level verdict
    min_effect: float = 0.02
    confidence: float = 0.95
    min_count: int = 100
    min_minutes: int = 10
    replicates: int = 1000  # of each of the three resamplings
    seed: int = 0  # a fixed seed: the same data gets the same answer


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Difference:
    """b relative to a: b / a - 1, with its interval."""

    rel: float | None
    lo: float | None
    hi: float | None
    verdict: str


@dataclass
class Comparison:
    a_count: int
    b_count: int
    a: dict[str, Estimate | None]
    b: dict[str, Estimate | None]
    diff: dict[str, Difference]
    stat: str
    method: str
    notes: list[str]

    @property
    def verdict(self) -> str:
        return self.diff[self.stat].verdict

    def as_json(self) -> dict:
        return {
            "a": _cohort_json(self.a_count, self.a),
            "b": _cohort_json(self.b_count, self.b),
            "diff": {stat: _difference_json(d) for stat, d in self.diff.items()},
            "verdict": self.verdict,
            "stat": self.stat,
            "method": self.method,
            "notes": self.notes,
        }


def _cohort_json(count: int, estimates: dict[str, Estimate | None]) -> dict:
    out: dict = {"count": count}
    for stat, e in estimates.items():
        out[stat] = None if e is None else {"value": e.value, "lo": e.lo, "hi": e.hi}
    return out


def _difference_json(d: Difference) -> dict:
    return {"rel": _rounded(d.rel), "lo": _rounded(d.lo), "hi": _rounded(d.hi), "verdict": d.verdict}


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def verdict(rel: float, lo: float, hi: float, min_effect: float) -> str:
    """`slower` (b higher) or `faster` only when the interval excludes zero and the difference
    is larger than `min_effect`."""
    if lo > 0 and rel > min_effect:
        return SLOWER
    if hi < 0 and rel < -min_effect:
        return FASTER
    return NO_CHANGE


def compare(a: Cells, b: Cells, options: Options) -> Comparison:
    if a.slot_s != b.slot_s:
        raise ValueError("both cohorts must be cut into blocks of the same length")
    notes = [PRECISION_NOTE, *design_notes(a, b)]
    short = [*_shortfall("a", a, options), *_shortfall("b", b, options)]
    if short:
        return _insufficient(a, b, options, short + notes)
    draws = _draws(a, b, options.replicates, options.seed)
    found_a = _replicates(a, draws[0], options.stats)
    found_b = _replicates(b, draws[1], options.stats)
    alone_a, alone_b = _Design.alone(a), _Design.alone(b)
    both = _Design.between(a, b)
    diff = {}
    for stat in options.stats:
        diff[stat] = _difference(found_a[stat], found_b[stat], both, options)
        if diff[stat].rel is None:
            notes.append(f"{stat}: a's value is not above zero, so no relative difference can be given.")
    return Comparison(
        a.count,
        b.count,
        {s: _estimate(*found_a[s], alone_a, options.confidence) for s in options.stats},
        {s: _estimate(*found_b[s], alone_b, options.confidence) for s in options.stats},
        diff,
        options.stat,
        _method(a, b, options),
        notes,
    )


def _shortfall(name: str, c: Cells, options: Options) -> list[str]:
    out = []
    if c.count < options.min_count:
        out.append(f"{name} has {c.count} points, fewer than the {options.min_count} a comparison needs.")
    if c.minutes < options.min_minutes:
        out.append(
            f"{name} has points in {c.minutes} minutes, fewer than the {options.min_minutes} a "
            "comparison needs."
        )
    return out


def _insufficient(a: Cells, b: Cells, options: Options, notes: list[str]) -> Comparison:
    none = dict.fromkeys(options.stats)
    return Comparison(
        a.count,
        b.count,
        none,
        dict(none),
        {s: Difference(None, None, None, INSUFFICIENT) for s in options.stats},
        options.stat,
        "none: not enough data",
        notes,
    )


RESAMPLINGS = ("unit", "block", "cell")


@dataclass
class _Draw:
    """One cohort's weights: each cell's in each replicate of each resampling (rows: the
    replicates of `RESAMPLINGS` one after the other), and for rates the weights of time."""

    cells: np.ndarray  # (3 x replicates, cells)
    seconds: np.ndarray  # (3 x replicates,): the cohort's seconds, weighted as its blocks are


def _draws(a: Cells, b: Cells, replicates: int, seed: int) -> list[_Draw]:
    """Both cohorts' weights; a unit, block or cell both cohorts have gets the same weights."""
    units = sorted({(c.level, u) for c in (a, b) for u in c.units})
    slots = np.union1d(a.slots, b.slots)
    position = {u: i for i, u in enumerate(units)}
    of_cells = []
    for c in (a, b):
        unit, slot = split_label(c.groups.label)
        of_unit = np.array([position[(c.level, u)] for u in c.units], np.int64)
        of_cells.append((of_unit[unit], np.searchsorted(slots, slot)))
    cell_ids = [u * len(slots) + s for u, s in of_cells]
    every_cell = np.unique(np.concatenate(cell_ids))
    rng = np.random.default_rng(seed)
    unit_w = rng.exponential(size=(replicates, len(units))).astype(np.float32)
    slot_w = rng.exponential(size=(replicates, len(slots))).astype(np.float32)
    cell_w = rng.exponential(size=(replicates, len(every_cell))).astype(np.float32)
    out = []
    for c, (unit, slot), ids in zip((a, b), of_cells, cell_ids, strict=True):
        weights = np.vstack([unit_w[:, unit], slot_w[:, slot], cell_w[:, np.searchsorted(every_cell, ids)]])
        seconds = np.concatenate(
            [
                np.full(replicates, c.seconds.sum()),
                slot_w[:, np.searchsorted(slots, c.slots)] @ c.seconds,
                np.full(replicates, c.seconds.sum()),
            ]
        )
        out.append(_Draw(weights, seconds))
    return out


Found = dict[str, tuple[float, dict[str, np.ndarray]]]


def _replicates(c: Cells, draw: _Draw, stats: tuple[str, ...]) -> Found:
    """Each statistic of the cohort: its value over all points, and its values in the
    replicates of each resampling."""
    g, w = c.groups, draw.cells
    found: dict[str, tuple[float, np.ndarray]] = {}
    if "mean" in stats:
        found["mean"] = (g.sum.sum() / g.count.sum(), (w @ g.sum) / (w @ g.count.astype(np.float64)))
    if "rate" in stats:
        found["rate"] = (g.sum.sum() / c.seconds.sum(), _rates(c, draw))
    wanted = [s for s in stats if s in QUANTILES]
    if wanted:
        point, reps = _quantile_replicates(g, w, [QUANTILES[s] for s in wanted])
        found.update((s, (point[j], reps[:, j])) for j, s in enumerate(wanted))
    return {
        s: (float(value), dict(zip(RESAMPLINGS, np.split(reps, 3), strict=True)))
        for s, (value, reps) in found.items()
    }


def _rates(c: Cells, draw: _Draw) -> np.ndarray:
    """Each replicate's sum of values per second. A cohort's rate is a total over its units
    (and cells): a replicate stands for as many of them as the cohort has."""
    g, w = c.groups, draw.cells
    units = split_label(g.label)[0]
    thirds = len(w) // 3
    scale = np.ones(len(w))
    first_cell = np.unique(units, return_index=True)[1]  # a unit's weight is that of each of its cells
    scale[:thirds] = len(first_cell) / w[:thirds, first_cell].sum(axis=1)
    scale[2 * thirds :] = len(g) / w[2 * thirds :].sum(axis=1)
    return (w @ g.sum) * scale / draw.seconds


def _quantile_replicates(g: Groups, w: np.ndarray, qs: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The quantiles of all the cells' points, and of each replicate's weighted merge of them
    (clamped into the exact minimum and maximum)."""
    keys = np.unique(g.pair_key)
    dense = np.zeros((len(g), len(keys)), np.float32)
    cell_of_pair = np.repeat(np.arange(len(g)), np.diff(g.pair_start))
    dense[cell_of_pair, np.searchsorted(keys, g.pair_key)] = g.pair_count
    lo, hi = bin_edges(keys)
    floor, ceiling = float(g.min.min()), float(g.max.max())
    point = quantiles(dense.sum(axis=0, dtype=np.float64)[None, :], lo, hi, qs)[0]
    reps = quantiles((w @ dense).astype(np.float64), lo, hi, qs)
    return np.clip(point, floor, ceiling), np.clip(reps, floor, ceiling)


def bin_edges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values each sketch key's bin spans: (gamma^(i-1), gamma^i] for positive values,
    mirrored for negative ones, and [0, 0] for zero (sketch.py)."""
    keys = np.asarray(keys, np.int64)
    lo, hi = np.zeros(len(keys)), np.zeros(len(keys))
    pos, neg = keys > 0, keys < 0
    i = keys[pos] - BASE
    lo[pos], hi[pos] = GAMMA ** (i - 1), GAMMA**i
    j = -BASE - keys[neg]
    lo[neg], hi[neg] = -(GAMMA**j), -(GAMMA ** (j - 1))
    return lo, hi


def quantiles(hist: np.ndarray, lo: np.ndarray, hi: np.ndarray, qs: list[float]) -> np.ndarray:
    """(rows, len(qs)): the q-quantiles of each row of weighted bin counts, where the
    cumulative weight reaches q of the row's total, interpolated within that bin: continuous
    in the weights, so replicates do not snap to the bins' 1 % steps."""
    cum = np.cumsum(hist, axis=1)
    total = cum[:, -1]
    rows = np.arange(hist.shape[0])
    out = np.empty((hist.shape[0], len(qs)))
    for j, q in enumerate(qs):
        target = q * total
        k = np.minimum((cum < target[:, None]).sum(axis=1), hist.shape[1] - 1)
        in_bin = hist[rows, k]
        below = cum[rows, k] - in_bin
        frac = np.clip((target - below) / np.where(in_bin > 0, in_bin, 1.0), 0.0, 1.0)
        out[:, j] = lo[k] + frac * (hi[k] - lo[k])
    return out


@dataclass(frozen=True)
class _Clusters:
    """What one between-cluster part of a variance rests on: `n` clusters (a harmonic mean
    over independent groups of them), the factor that undoes the Bayesian bootstrap's bias
    for n clusters, and the degrees of freedom."""

    n: float
    factor: float
    df: float

    @classmethod
    def of(cls, groups: list[int]) -> _Clusters:
        """Independent groups of clusters (a cohort's units, say), each of the given size;
        groups of one cluster move nothing (a single weight cancels out of every ratio)."""
        sizes = [n for n in groups if n >= 2]
        if not sizes:
            return cls(math.inf, 1.0, math.inf)
        inv = sum(1 / n for n in sizes)
        return cls(
            len(sizes) / inv,
            sum((n + 1) / (n - 1) / n for n in sizes) / inv,
            inv**2 / sum(1 / (n * n * (n - 1)) for n in sizes),
        )

    @classmethod
    def between(cls, a: set, b: set) -> _Clusters:
        """Two cohorts' clusters: paired when they mostly share them, else independent."""
        shared = len(a & b)
        return cls.of([shared] if shared and 2 * shared >= min(len(a), len(b)) else [len(a), len(b)])


@dataclass(frozen=True)
class _Design:
    units: _Clusters
    blocks: _Clusters
    cells: int

    @classmethod
    def alone(cls, c: Cells) -> _Design:
        units, slots = _present(c)
        return cls(_Clusters.of([len(units)]), _Clusters.of([len(slots)]), len(c.groups))

    @classmethod
    def between(cls, a: Cells, b: Cells) -> _Design:
        (units_a, slots_a), (units_b, slots_b) = _present(a), _present(b)
        units_a = {(a.level, a.units[u]) for u in units_a}
        units_b = {(b.level, b.units[u]) for u in units_b}
        return cls(
            _Clusters.between(units_a, units_b),
            _Clusters.between(slots_a, slots_b),
            len(a.groups) + len(b.groups),
        )


def _present(c: Cells) -> tuple[set, set]:
    """The units and the blocks that have points."""
    unit, slot = split_label(c.groups.label[c.groups.count > 0])
    return set(unit.tolist()), set(slot.tolist())


def _spread(
    point: float, reps: dict[str, np.ndarray], design: _Design, confidence: float
) -> tuple[float, float]:
    """The interval of a statistic from its replicates under each resampling: on the log scale
    when it is positive throughout."""
    log = point > 0 and all((r > 0).all() for r in reps.values())
    centre = math.log(point) if log else point
    var = {k: float(np.var(np.log(r) if log else r)) for k, r in reps.items()}
    # Each one-way bootstrap counts the cells' own noise once more; the cell bootstrap counts
    # it with 1/n of each between part (two-way crossed random effects, moment equations).
    units, blocks = design.units, design.blocks
    rest = 1 - 1 / units.n - 1 / blocks.n
    noise = var["cell"]
    if rest > 0.5:
        noise = (var["cell"] - var["unit"] / units.n - var["block"] / blocks.n) / rest
    noise = min(max(noise, 0.0), var["cell"])
    parts = [
        (max(var["unit"] - noise, 0.0) * units.factor, units.df),
        (max(var["block"] - noise, 0.0) * blocks.factor, blocks.df),
        (noise, max(design.cells - 1, 1)),
    ]
    total = sum(v for v, _ in parts)
    if total <= 0:
        return point, point
    df = total**2 / sum(v * v / df for v, df in parts)
    half = float(stdtrit(df, 1 - (1 - confidence) / 2)) * math.sqrt(total)
    if log:
        return math.exp(centre - half), math.exp(centre + half)
    return centre - half, centre + half


def _estimate(value: float, reps: dict[str, np.ndarray], design: _Design, confidence: float) -> Estimate:
    lo, hi = _spread(value, reps, design, confidence)
    return Estimate(value, lo, hi)


def _difference(
    a: tuple[float, dict[str, np.ndarray]],
    b: tuple[float, dict[str, np.ndarray]],
    design: _Design,
    options: Options,
) -> Difference:
    (a_value, a_reps), (b_value, b_reps) = a, b
    if not (a_value > 0 and all((r > 0).all() for r in a_reps.values())):
        return Difference(None, None, None, INSUFFICIENT)
    ratio = {k: b_reps[k] / a_reps[k] for k in RESAMPLINGS}
    lo, hi = _spread(b_value / a_value, ratio, design, options.confidence)
    rel = b_value / a_value - 1
    return Difference(rel, lo - 1, hi - 1, verdict(rel, lo - 1, hi - 1, options.min_effect))


def _blocks(slot_s: int) -> str:
    return f"{slot_s // 3600} h" if slot_s % 3600 == 0 else f"{slot_s // 60} min"


def _method(a: Cells, b: Cells, options: Options) -> str:
    units = {(c.level, c.units[u]) for c in (a, b) for u in _present(c)[0]}
    levels = " and ".join(sorted({f"{c.level}s" for c in (a, b)}))
    blocks = len(np.union1d(a.slots, b.slots))
    return (
        f"cluster bootstrap over {len(units)} {levels} and {blocks} blocks of {_blocks(a.slot_s)}: "
        f"{options.replicates} Exp(1)-weighted replicates each by unit, by block and by cell, shared "
        "where the cohorts share them; variances combined as for crossed random effects, Student's t "
        f"{options.confidence:.0%} intervals on the log scale; a verdict needs the interval to "
        f"exclude 0 and a difference above {options.min_effect:.1%}"
    )


def design_notes(a: Cells, b: Cells) -> list[str]:
    """What the cohorts' overlap in time and in agents means for the comparison."""
    notes = []
    if a.end <= b.start or b.end <= a.start:
        notes.append(
            "a and b cover different times: whatever else changed between them (the daily cycle, an "
            "episode) counts as their difference. Comparing two earlier ranges the same way shows "
            "how large that is."
        )
    for name, c in (("a", a), ("b", b)):
        if c.level == "node":
            notes.append(
                f"{name}'s {c.agents} agents are too many to read one by one over this range: they are "
                f"resampled by node ({len(c.units)} nodes), so differences between agents of one node "
                "are not counted."
            )
    if a.level == b.level == "agent":
        units_a, units_b = ({c.units[u] for u in _present(c)[0]} for c in (a, b))
        shared = len(units_a & units_b)
        if shared == 0:
            notes.append(
                f"a and b run on different agents ({len(units_a)} and {len(units_b)}): the agents' own "
                "differences are resampled with them and widen the intervals."
            )
            for name, units in (("a", units_a), ("b", units_b)):
                if 1 < len(units) < FEW_UNITS:
                    notes.append(
                        f"{name} runs on only {len(units)} agents: too few to tell their own differences "
                        "from the cohorts', so its intervals are wide."
                    )
        else:
            notes.append(f"a and b share {shared} agents: each is resampled in both at once.")
    return notes
