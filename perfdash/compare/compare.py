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
  Student's t on the log scale with Welch-Satterthwaite degrees of freedom. n counts clusters
  by how much of the statistic each carries (Kish's effective number): a p95 rests on the
  units and blocks whose points reach it, fewer than all when an agent or an episode
  dominates the tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit

from perfdash.metrics.rollup import Groups, split_label
from perfdash.metrics.sketch import ALPHA, BASE, GAMMA, PERCENTILES

STATS = ("mean", *PERCENTILES)
COUNTER_STATS = ("rate",)
SLOWER, FASTER, NO_CHANGE, INSUFFICIENT = "slower", "faster", "no_change", "insufficient_data"
PRECISION_NOTE = (
    f"Quantiles are read from sketches that place every value within {ALPHA * 100:g} %, so each is "
    f"within {2 * ALPHA * 100:g} % of exact before its interval; counts, means and rates are exact."
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
    histograms: tuple[dict, dict] | None = None

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
        } | ({"histograms": {"a": self.histograms[0], "b": self.histograms[1]}} if self.histograms else {})


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
    cells = len(a.groups) + len(b.groups)
    diff = {}
    for stat in options.stats:
        diff[stat] = _difference(found_a[stat], found_b[stat], cells, options)
        if diff[stat].rel is None:
            notes.append(f"{stat}: a's value is not above zero, so no relative difference can be given.")
    return Comparison(
        a.count,
        b.count,
        {s: _estimate(found_a[s], len(a.groups), options.confidence) for s in options.stats},
        {s: _estimate(found_b[s], len(b.groups), options.confidence) for s in options.stats},
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
    unit_w = rng.standard_exponential((replicates, len(units)), dtype=np.float32)
    slot_w = rng.standard_exponential((replicates, len(slots)), dtype=np.float32)
    cell_w = rng.standard_exponential((replicates, len(every_cell)), dtype=np.float32)
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


@dataclass
class _Found:
    """One statistic of one cohort: its value over all points, its values in the replicates of
    each resampling, and how much of it each unit and each block carries: the points above it
    for a quantile (a high quantile rests on the few units whose points reach it), every point
    for a mean, the sum for a rate. Those shares say how many clusters its spread rests on."""

    value: float
    reps: dict[str, np.ndarray]
    by_unit: dict[tuple[str, str], float]
    by_block: dict[int, float]


def _replicates(c: Cells, draw: _Draw, stats: tuple[str, ...]) -> dict[str, _Found]:
    """Each statistic of the cohort, over all its points and in every replicate."""
    g, w = c.groups, draw.cells
    found: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}  # value, replicates, each cell's share
    if "mean" in stats:
        reps = (w @ g.sum.astype(np.float32)) / (w @ g.count.astype(np.float32))
        found["mean"] = (g.sum.sum() / g.count.sum(), reps, g.count.astype(np.float64))
    if "rate" in stats:
        found["rate"] = (g.sum.sum() / c.seconds.sum(), _rates(c, draw), np.abs(g.sum))
    wanted = [s for s in stats if s in PERCENTILES]
    if wanted:
        point, reps, above = _quantile_replicates(g, w, [PERCENTILES[s] for s in wanted])
        found.update((s, (point[j], reps[:, j], above[:, j])) for j, s in enumerate(wanted))
    unit, slot = split_label(g.label)
    slots, slot_of = np.unique(slot, return_inverse=True)
    out = {}
    for stat, (value, reps, share) in found.items():
        by_unit = np.bincount(unit, share, minlength=len(c.units))
        by_block = np.bincount(slot_of, share, minlength=len(slots))
        out[stat] = _Found(
            float(value),
            dict(zip(RESAMPLINGS, np.split(reps.astype(np.float64), 3), strict=True)),
            {(c.level, c.units[i]): float(h) for i, h in enumerate(by_unit) if h > 0},
            {int(s): float(h) for s, h in zip(slots, by_block, strict=True) if h > 0},
        )
    return out


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
    return (w @ g.sum.astype(np.float32)) * scale / draw.seconds


def _quantile_replicates(
    g: Groups, w: np.ndarray, qs: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The quantiles of all the cells' points; of each replicate's weighted merge of them
    (clamped into the exact minimum and maximum); and each cell's points at or above each."""
    keys = np.unique(g.pair_key)
    dense = np.zeros((len(g), len(keys)), np.float32)
    cell_of_pair = np.repeat(np.arange(len(g)), np.diff(g.pair_start))
    dense[cell_of_pair, np.searchsorted(keys, g.pair_key)] = g.pair_count
    lo, hi = bin_edges(keys)
    floor, ceiling = float(g.min.min()), float(g.max.max())
    merged = dense.sum(axis=0, dtype=np.float64)
    point = quantiles(merged[None, :], lo, hi, qs)[0]
    reps = quantiles(w @ dense, lo, hi, qs)
    from_bin = np.searchsorted(np.cumsum(merged), np.asarray(qs) * merged.sum())
    at_or_above = (np.arange(len(keys))[:, None] >= from_bin[None, :]).astype(np.float32)
    return np.clip(point, floor, ceiling), np.clip(reps, floor, ceiling), dense @ at_or_above


HISTOGRAM_BINS = 60


def histogram_pair(a: Cells, b: Cells, bins: int = HISTOGRAM_BINS) -> tuple[dict, dict]:
    """Both cohorts' points in the same bins, about `bins` of them of equal width on a log
    scale (whole sketch bins merged): {"lo": [...], "hi": [...], "count": [...], "not_positive":
    points at or below zero, which a log axis cannot show}."""
    positive = [c.groups.pair_key[c.groups.pair_key > 0].astype(np.int64) - BASE for c in (a, b)]
    every = np.concatenate(positive)
    if not len(every):
        empty = {"lo": [], "hi": [], "count": []}
        return tuple({**empty, "not_positive": c.count} for c in (a, b))  # type: ignore[return-value]
    first, last = int(every.min()), int(every.max())
    step = max(1, math.ceil((last - first + 1) / bins))
    edges = np.arange(first, last + step + 1, step)  # bin j holds sketch indexes [edges[j], edges[j+1])
    lo, hi = GAMMA ** (edges[:-1] - 1.0), GAMMA ** (edges[1:] - 1.0)
    out = []
    for c, index in zip((a, b), positive, strict=True):
        counts = c.groups.pair_count[c.groups.pair_key > 0]
        binned = np.bincount((index - first) // step, counts, minlength=len(lo))
        out.append(
            {
                "lo": lo.tolist(),
                "hi": hi.tolist(),
                "count": binned.astype(np.int64).tolist(),
                "not_positive": int(c.count - counts.sum()),
            }
        )
    return out[0], out[1]


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


def kish(shares: dict) -> float:
    """The effective number of clusters that carry these shares: n when they carry as much
    each, 1 when one carries everything."""
    h = np.fromiter(shares.values(), float)
    return float(h.sum() ** 2 / (h * h).sum()) if len(h) else 0.0


@dataclass(frozen=True)
class _Clusters:
    """What one between-cluster part of a variance rests on: `n` effective clusters (a
    harmonic mean over independent groups of them), the factor that undoes the Bayesian
    bootstrap's bias for n clusters, the degrees of freedom, and whether the two cohorts'
    clusters are the same ones (paired)."""

    n: float
    factor: float
    df: float
    paired: bool = False

    @classmethod
    def of(cls, groups: list[float], paired: bool = False) -> _Clusters:
        """Independent groups of clusters (a cohort's units, say) of these effective sizes;
        a group of one cluster moves nothing (a single weight cancels out of every ratio), and
        fewer than two count as two (one degree of freedom: the widest t this gives)."""
        sizes = [max(n, 2.0) for n in groups if n > 1]
        if not sizes:
            return cls(math.inf, 1.0, math.inf, paired)
        inv = sum(1 / n for n in sizes)
        return cls(
            len(sizes) / inv,
            sum((n + 1) / (n - 1) / n for n in sizes) / inv,
            inv**2 / sum(1 / (n * n * (n - 1)) for n in sizes),
            paired,
        )

    @classmethod
    def between(cls, a: dict, b: dict) -> _Clusters:
        """Two cohorts' clusters, by their shares: paired when they mostly share them (each
        cluster's share of a and of b add up), else independent groups."""
        shared = a.keys() & b.keys()
        if shared and 2 * len(shared) >= min(len(a), len(b)):
            total_a, total_b = sum(a.values()), sum(b.values())
            both = {k: a.get(k, 0) / total_a + b.get(k, 0) / total_b for k in a.keys() | b.keys()}
            return cls.of([kish(both)], paired=True)
        return cls.of([kish(a), kish(b)])


@dataclass(frozen=True)
class _Design:
    units: _Clusters
    blocks: _Clusters
    cells: int

    @classmethod
    def alone(cls, found: _Found, cells: int) -> _Design:
        return cls(_Clusters.of([kish(found.by_unit)]), _Clusters.of([kish(found.by_block)]), cells)

    @classmethod
    def between(cls, a: _Found, b: _Found, cells: int) -> _Design:
        return cls(_Clusters.between(a.by_unit, b.by_unit), _Clusters.between(a.by_block, b.by_block), cells)


def _present(c: Cells) -> set:
    """The units that have points."""
    unit, _ = split_label(c.groups.label[c.groups.count > 0])
    return set(unit.tolist())


def _spread(
    point: float, reps: dict[str, np.ndarray], design: _Design, confidence: float
) -> tuple[float, float]:
    """The interval of a statistic from its replicates under each resampling: on the log scale
    when it is positive throughout."""
    log = point > 0 and all((r > 0).all() for r in reps.values())
    centre = math.log(point) if log else point
    var = {k: float(np.var(np.log(r) if log else r)) for k, r in reps.items()}
    # Each one-way bootstrap counts the cells' own noise once more; the cell bootstrap counts
    # the part between units once per block and the part between blocks once per unit
    # (moment equations of two-way crossed random effects).
    units, blocks = design.units, design.blocks
    rest = 1 - 1 / units.n - 1 / blocks.n
    noise = var["cell"]
    if rest > 0.5:
        noise = (var["cell"] - var["unit"] / blocks.n - var["block"] / units.n) / rest
    noise = min(max(noise, 0.0), var["cell"])
    between_units = max(var["unit"] - noise, 0.0) * units.factor
    between_blocks = max(var["block"] - noise, 0.0) * blocks.factor
    total = between_units + between_blocks + noise
    if total <= 0:
        return point, point
    # Degrees of freedom (Welch-Satterthwaite). A between part of independent cohorts comes
    # from a one-way bootstrap's whole variance, noise included, measured on that way's few
    # clusters; in a paired design it is what is left once the shared clusters cancel, and
    # only that rests on few clusters.
    uncertain = [
        (between_units if units.paired else units.factor * var["unit"], units.df, between_units),
        (between_blocks if blocks.paired else blocks.factor * var["block"], blocks.df, between_blocks),
        (noise, max(design.cells - 1, 1), noise),
    ]
    df = max(1.0, total**2 / sum(v * v / dof for v, dof, part in uncertain if part > 0))
    half = float(stdtrit(df, 1 - (1 - confidence) / 2)) * math.sqrt(total)
    if log:
        return math.exp(centre - half), math.exp(centre + half)
    return centre - half, centre + half


def _estimate(found: _Found, cells: int, confidence: float) -> Estimate:
    lo, hi = _spread(found.value, found.reps, _Design.alone(found, cells), confidence)
    return Estimate(found.value, lo, hi)


def _difference(a: _Found, b: _Found, cells: int, options: Options) -> Difference:
    if not (a.value > 0 and all((r > 0).all() for r in a.reps.values())):
        return Difference(None, None, None, INSUFFICIENT)
    ratio = {k: b.reps[k] / a.reps[k] for k in RESAMPLINGS}
    lo, hi = _spread(b.value / a.value, ratio, _Design.between(a, b, cells), options.confidence)
    rel = b.value / a.value - 1
    return Difference(rel, lo - 1, hi - 1, verdict(rel, lo - 1, hi - 1, options.min_effect))


def _blocks(slot_s: int) -> str:
    return f"{slot_s // 3600} h" if slot_s % 3600 == 0 else f"{slot_s // 60} min"


def _method(a: Cells, b: Cells, options: Options) -> str:
    units = {(c.level, c.units[u]) for c in (a, b) for u in _present(c)}
    levels = " and ".join(sorted({f"{c.level}s" for c in (a, b)}))
    blocks = len(np.union1d(a.slots, b.slots))
    return (
        f"cluster bootstrap over {len(units)} {levels} and {blocks} blocks of {_blocks(a.slot_s)}: "
        f"{options.replicates} Exp(1)-weighted replicates each by unit, by block and by cell, shared "
        "where the cohorts share them; variances combined as for crossed random effects and scaled "
        f"for few clusters; Student's t {options.confidence:.0%} intervals on the log scale; a "
        f"verdict needs the interval to exclude 0 and a difference above {options.min_effect:.1%}"
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
        units_a, units_b = ({c.units[u] for u in _present(c)} for c in (a, b))
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
