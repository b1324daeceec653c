"""Reading the metric store: statistics, histograms and time series over any window.

The one place that turns rollup rows into numbers; the read API, the dashboard, alert
evaluation and forecasting all call it. Every answer is built from rollups: whole hours
from hourly rows, the edges from minute rows, plus deltas not yet folded, in one SQL
statement (one snapshot, so a concurrent compaction never counts a point twice).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

import numpy as np
from django.conf import settings

from perfdash.lib.durations import DAY_S
from perfdash.lib.pg import binary_cursor
from perfdash.metrics import keys
from perfdash.metrics.dimensions import dimension_tags
from perfdash.metrics.models import WELL_KNOWN_METRICS
from perfdash.metrics.rollup import ROW_COLUMNS, Groups, Rows, combine
from perfdash.metrics.scope import FLEET, QueryError, Scope, UnknownMetric, check_text
from perfdash.metrics.sketch import PERCENTILES, key_values, quantiles

STATS = ("count", "min", "max", "avg", "sum", "rate", *PERCENTILES)
# How fast a mean rises, as a share of itself per minute (`growth`): read from minute rows only,
# so its windows are short.
GROWTH = "growth"
MAX_GROWTH_WINDOW_S = 6 * 3600
MAX_SERIES_POINTS = 1500


def known_metric(metric: str) -> bool:
    return metric in WELL_KNOWN_METRICS or keys.known(metric)


def _check(metric: str) -> None:
    check_text("metric", metric)
    if not known_metric(metric):
        raise UnknownMetric(metric)


def _bounds(window_s: int, now: float, step_s: int = 60) -> tuple[int, int, int, int]:
    """[start, end) aligned to `step_s`, and the whole hours [h0, h1) inside it.
    Windows older than the minute-rollup retention start on an hour."""
    end = (int(now) // step_s + 1) * step_s
    start = end - window_s
    if start < now - settings.MINUTE_ROLLUP_RETENTION_DAYS * DAY_S + 3600:
        start = start // 3600 * 3600
    return start, end, *whole_hours(start, end)


def whole_hours(start: int, end: int) -> tuple[int, int]:
    """The whole hours [h0, h1) inside [start, end) (both `end` if there are none)."""
    h0, h1 = -(-start // 3600) * 3600, end // 3600 * 3600
    return (h0, h1) if h0 < h1 else (end, end)


def window(window_s: int, now: float | None = None) -> tuple[int, int]:
    """[start, end) of a window read at `now`, in whole minutes (the last one still running)."""
    start, end, _, _ = _bounds(window_s, time.time() if now is None else now)
    return start, end


def _in_window(select: str, keys: str = "keys") -> str:
    """`select` (with {t} and {p} for table alias and period column) over the three tables
    that together hold a window: whole hours, the minutes at its edges, unfolded deltas; of
    the keys in the parameter `keys`."""
    return f"""
SELECT {select.format(t="h", p="hour")} FROM metrics_rollup_hour h
 WHERE h.key_id = ANY(%({keys})s::int4[])
   AND h.hour >= to_timestamp(%(h0)s) AND h.hour < to_timestamp(%(h1)s)
UNION ALL
SELECT {select.format(t="m", p="minute")} FROM metrics_rollup_minute m
 WHERE m.key_id = ANY(%({keys})s::int4[])
   AND m.minute >= to_timestamp(%(start)s) AND m.minute < to_timestamp(%(end)s)
   AND (m.minute < to_timestamp(%(h0)s) OR m.minute >= to_timestamp(%(h1)s))
UNION ALL
SELECT {select.format(t="d", p="minute")} FROM metrics_rollup_delta d
 WHERE d.key_id = ANY(%({keys})s::int4[])
   AND d.minute >= to_timestamp(%(start)s) AND d.minute < to_timestamp(%(end)s)
"""


_READ = _in_window(ROW_COLUMNS)
_SUMMED = "{t}.key_id, {t}.count AS n, {t}.sum AS s, {t}.min AS lo, {t}.max AS hi"
# Per key, without the sketches: what a breakdown without percentiles needs, summed in PostgreSQL.
_TOTALS = (
    "SELECT key_id, sum(n)::int8, sum(s)::float8, min(lo), max(hi) FROM ("
    + _in_window(_SUMMED)
    + ") w GROUP BY key_id"
)

_PEAKS = (
    "SELECT key_id, period, max(hi) FROM ("
    + _in_window("{t}.key_id, extract(epoch FROM {t}.{p})::int8 AS period, {t}.max AS hi")
    + ") w GROUP BY key_id, period"
)

_MEANS = (
    "SELECT key_id, period, sum(n)::int8, sum(s)::float8 FROM ("
    + _in_window("{t}.key_id, extract(epoch FROM {t}.{p})::int8 AS period, {t}.count AS n, {t}.sum AS s")
    + ") w GROUP BY key_id, period"
)


def _array(ids: list[int]) -> str:
    """Key ids as one PostgreSQL array literal: psycopg would adapt a list of a thousand ints
    one by one."""
    return "{" + ",".join(map(str, ids)) + "}"


def read_rows(ids: list[int], start: int, end: int, h0: int, h1: int) -> Rows:
    if not ids:
        return Rows.of([])
    with binary_cursor() as cur:
        cur.execute(_READ, {"keys": _array(ids), "start": start, "end": end, "h0": h0, "h1": h1})
        return Rows.of(cur.fetchall())


def _summaries(rows: Rows, label: np.ndarray) -> Groups:
    return combine(
        label, rows.count, rows.sum, rows.min, rows.max, rows.pair_row, rows.pair_key, rows.pair_count
    )


def _stat_values(g: Groups, i: int, seconds: float) -> dict[str, float | int | None]:
    count = int(g.count[i])
    sl = slice(g.pair_start[i], g.pair_start[i + 1])
    pct = quantiles(g.pair_key[sl], g.pair_count[sl], list(PERCENTILES.values()), g.min[i], g.max[i])
    out: dict[str, float | int | None] = {
        "count": count,
        "min": float(g.min[i]),
        "max": float(g.max[i]),
        "avg": float(g.sum[i]) / count,
        "sum": float(g.sum[i]),
        "rate": count / seconds,
    }
    out.update(zip(PERCENTILES, pct, strict=True))
    return out


def _stat_columns(g: Groups, wanted: list[str], seconds: float) -> dict[str, np.ndarray]:
    """`_stat_values` of every group at once, as one column per statistic in `wanted`: a
    window's steps are hundreds of groups, and numpy over all their bins at once costs about
    what one group's does in a Python loop. Same numbers as `_stat_values`, group by group."""
    out: dict[str, np.ndarray] = {}
    count = g.count
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = {"count": count, "min": g.min, "max": g.max, "sum": g.sum}
        plain |= {"avg": g.sum / count, "rate": count / seconds}
        out |= {stat: np.asarray(plain[stat]) for stat in wanted if stat in plain}
    wanted_q = [s for s in wanted if s in PERCENTILES]
    if wanted_q:
        values = grouped_quantiles(g, [PERCENTILES[s] for s in wanted_q])
        out |= {stat: values[:, j] for j, stat in enumerate(wanted_q)}
    return out


def grouped_quantiles(g: Groups, qs: list[float]) -> np.ndarray:
    """`sketch.quantiles` of every group's bins, one row per group (NaN for a group without
    bins): each group's ranks found in one cumulative count over all the groups' pairs, offset
    by what the groups before it hold."""
    n = len(g.label)
    out = np.full((n, len(qs)), np.nan)
    if not n or not len(g.pair_key):
        return out
    cum = np.cumsum(g.pair_count)
    before = np.concatenate([[0], cum])[g.pair_start]  # each group's offset, and the end's
    total = np.diff(before)
    has = np.flatnonzero(total > 0)
    base, last = before[has][:, None], g.pair_start[has + 1][:, None] - 1
    ranks = np.asarray(qs, dtype=np.float64)[None, :] * (total[has][:, None] - 1)
    below = np.floor(ranks)
    at_below = np.minimum(np.searchsorted(cum, base + below, side="right"), last)
    at_above = np.minimum(
        np.searchsorted(cum, base + np.minimum(below + 1, total[has][:, None] - 1), side="right"), last
    )
    v_below, v_above = key_values(g.pair_key[at_below.ravel()]), key_values(g.pair_key[at_above.ravel()])
    vals = (v_below + (v_above - v_below) * (ranks - below).ravel()).reshape(len(has), len(qs))
    out[has] = np.minimum(np.maximum(vals, g.min[has][:, None]), g.max[has][:, None])
    return out


EMPTY = {
    "count": 0,
    "min": None,
    "max": None,
    "avg": None,
    "sum": 0.0,
    "rate": 0.0,
    **{p: None for p in PERCENTILES},
}


def _whole_window(metric: str, window_s: int, scope: Scope, now: float | None) -> tuple[Groups | None, float]:
    """The window's rows merged into one summary (None if empty), and the seconds it covers
    so far (its last minute is still running)."""
    _check(metric)
    now = time.time() if now is None else now
    start, end, h0, h1 = _bounds(window_s, now)
    rows = read_rows(keys.ids(metric, scope), start, end, h0, h1)
    if not len(rows.key):
        return None, min(end, now) - start
    return _summaries(rows, np.zeros(len(rows.key), np.int64)), min(end, now) - start


def stats(metric: str, window_s: int, scope: Scope = FLEET, now: float | None = None) -> dict:
    """count, min, max, avg, sum, rate (points/s) and p50/p90/p95/p99 over the window."""
    g, elapsed = _whole_window(metric, window_s, scope, now)
    return dict(EMPTY) if g is None else _stat_values(g, 0, elapsed)


def histogram(
    metric: str, window_s: int, scope: Scope = FLEET, buckets: int = 40, now: float | None = None
) -> dict:
    """Counts in `buckets` log-spaced buckets between the window's min and max (linear
    spacing if the values are not all positive)."""
    g, _ = _whole_window(metric, window_s, scope, now)
    return {"count": 0, "buckets": []} if g is None else _histogram(g, buckets)


def _histogram(g: Groups, buckets: int) -> dict:
    """Counts of the first group in log-spaced buckets between its min and max."""
    lo, hi = float(g.min[0]), float(g.max[0])
    sl = slice(g.pair_start[0], g.pair_start[1])
    values = np.clip(key_values(g.pair_key[sl]), lo, hi)
    if lo > 0 and hi > lo:
        edges = np.geomspace(lo, hi, buckets + 1)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1, buckets + 1)
    counts, _ = np.histogram(values, edges, weights=g.pair_count[sl])
    return {
        "count": int(g.count[0]),
        "buckets": [
            {"lower": float(a), "upper": float(b), "count": int(c)}
            for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ],
    }


def series(
    metric: str, window_s: int, step_s: int, stat: str, scope: Scope = FLEET, now: float | None = None
) -> list[tuple[int, float | None]]:
    """One value of `stat` per step, as (Unix seconds of the step start, value or None)."""
    return series_stats(metric, window_s, step_s, [stat], scope, now)[stat]


def series_stats(
    metric: str,
    window_s: int,
    step_s: int,
    stats_wanted: list[str],
    scope: Scope = FLEET,
    now: float | None = None,
) -> dict[str, list[tuple[int, float | None]]]:
    """Several statistics per step from one read (e.g. p50, p95 and p99 for one chart)."""
    return panel(metric, window_s, step_s, stats_wanted, scope, buckets=0, now=now)["series"]


def panel(
    metric: str,
    window_s: int,
    step_s: int,
    stats_wanted: list[str],
    scope: Scope = FLEET,
    buckets: int = 40,
    now: float | None = None,
) -> dict:
    """Everything one chart panel needs from a single read of the rollups: the window's
    statistics and histogram (left empty with `buckets=0`), and `stats_wanted` per step (the
    window is aligned to the step)."""
    _check(metric)
    _check_stats(stats_wanted)
    ids = keys.ids(metric, scope)
    return read_window(ids, window_s, step_s, now).panel(ids, stats_wanted, buckets)


def _check_stats(stats_wanted: list[str]) -> None:
    for stat in stats_wanted:
        if stat not in STATS:
            raise QueryError("stat", f"stat must be one of {', '.join(STATS)}")


@dataclass
class Window:
    """The rollup rows of several keys over one window, read together: a page's panels over
    the same window share one read (one scan of the unfolded deltas instead of one each), and
    its headline counts come from the same window (`totals`)."""

    rows: Rows
    start: int
    end: int
    step: int
    now: float

    def of(self, ids: list[int]) -> Rows:
        return self.rows.where(np.isin(self.rows.key, ids))

    def totals(self, ids: list[int]) -> dict[int, tuple[int, float]]:
        """(count, sum) per key over the same window for keys whose sketches are not needed:
        added up in PostgreSQL, from hour rows where whole hours allow (another read)."""
        if not ids:
            return {}
        fetched = key_totals(sorted(ids), self.start, self.end, *whole_hours(self.start, self.end))
        return {key: (n, total) for key, n, total, _, _ in fetched}

    @property
    def elapsed(self) -> float:
        """Seconds of the window that have passed (it may end in the future)."""
        return min(self.end, self.now) - self.start

    def panel(self, ids: list[int], stats_wanted: list[str], buckets: int = 40) -> dict:
        """The keys' statistics and histogram over the window (left empty with `buckets=0`),
        and `stats_wanted` per step."""
        _check_stats(stats_wanted)
        rows, start, step = self.of(ids), self.start, self.step
        steps = (self.end - start) // step
        out = {stat: [0.0 if stat in ("count", "sum", "rate") else None] * steps for stat in stats_wanted}
        result = {"stats": dict(EMPTY), "histogram": {"count": 0, "buckets": []}}
        if len(rows.key) and buckets:
            whole = _summaries(rows, np.zeros(len(rows.key), np.int64))
            stats = _stat_values(whole, 0, self.end - start)
            result = {"stats": stats, "histogram": _histogram(whole, buckets)}
        if len(rows.key):
            g = _summaries(rows, (rows.period - start) // step)
            inside = np.flatnonzero((g.label >= 0) & (g.label < steps))
            buckets_at = g.label[inside].tolist()
            for stat, column in _stat_columns(g, stats_wanted, step).items():
                values = out[stat]
                for bucket, value in zip(buckets_at, column[inside].tolist(), strict=True):
                    values[bucket] = value
        result["series"] = {
            stat: [(start + i * step, _clean(v)) for i, v in enumerate(vals)] for stat, vals in out.items()
        }
        return result


def read_window(ids: list[int], window_s: int, step_s: int, now: float | None = None) -> Window:
    """The rows of the keys `ids` over the window, aligned to `step_s`, in one read."""
    if step_s < 60 or step_s % 60:
        raise QueryError("step", "step must be a whole number of minutes")
    if window_s % step_s or window_s // step_s > MAX_SERIES_POINTS:
        raise QueryError("step", f"window must be a multiple of step, at most {MAX_SERIES_POINTS} steps")
    now = time.time() if now is None else now
    start, end, h0, h1 = _bounds(window_s, now, step_s)
    if step_s % 3600:
        if start < now - settings.MINUTE_ROLLUP_RETENTION_DAYS * DAY_S:
            raise QueryError(
                "step",
                "steps under 1h are kept for "
                f"{settings.MINUTE_ROLLUP_RETENTION_DAYS} days; use step=1h for this window",
            )
        h0 = h1 = end  # minute rows only
    return Window(read_rows(ids, start, end, h0, h1), start, end, step_s, now)


def _clean(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else v


def breakdowns() -> tuple[str, ...]:
    return ("node", "agent", *dimension_tags())


@dataclass
class Members:
    """Rollup keys and the group (node, agent or tag value) each belongs to."""

    ids: np.ndarray  # key ids, ascending
    label: np.ndarray  # each key's group: an index into `names`
    names: list[str]  # the groups' names, ascending

    @classmethod
    def of_pairs(cls, pairs: Iterable[tuple[int, str]]) -> Members:
        """From (key id, group name) pairs, as `keys.members` lists them."""
        ordered = sorted(pairs)
        names = sorted({n for _, n in ordered})
        position = {n: i for i, n in enumerate(names)}
        return cls(
            np.array([k for k, _ in ordered], np.int64),
            np.array([position[n] for _, n in ordered], np.int64),
            names,
        )

    def of(self, keys_read: np.ndarray) -> np.ndarray:
        return self.label[np.searchsorted(self.ids, keys_read)]


def _members(metric: str, by: str, scope: Scope, names: Collection[str] | None) -> Members | None:
    _check(metric)
    if by not in (allowed := breakdowns()):
        raise QueryError("by", f"by must be one of {', '.join(allowed)}")
    pairs = keys.members(metric, by, scope)
    if names is not None:
        wanted = set(names)
        pairs = [(key, name) for key, name in pairs if name in wanted]
    return Members.of_pairs(pairs) if pairs else None


def breakdown(
    metric: str,
    window_s: int,
    by: str,
    scope: Scope = FLEET,
    now: float | None = None,
    percentiles: bool = True,
    names: Collection[str] | None = None,
) -> dict[str, dict]:
    """Statistics of every node, agent or tag value (tool, model, ...) within the scope (only
    those in `names`, if given), all from one read: {name: {"count", "min", "max", "avg", "p50",
    ...}}. Without `percentiles` only count, min, max, avg and sum (much cheaper for a thousand
    agents). Every group travels: pages read `top` instead."""
    members = _members(metric, by, scope, names)
    if members is None:
        return {}
    now = time.time() if now is None else now
    start, end, h0, h1 = _bounds(window_s, now)
    elapsed = min(end, now) - start  # the last minute is still running
    if not percentiles:
        return _totals(members.ids, members.label, members.names, (start, end, h0, h1), elapsed)
    rows = read_rows(members.ids.tolist(), start, end, h0, h1)
    if not len(rows.key):
        return {}
    g = _summaries(rows, members.of(rows.key))
    return {members.names[label]: _stat_values(g, i, elapsed) for i, label in enumerate(g.label)}


def growth(
    metric: str, window_s: int, by: str = "agent", scope: Scope = FLEET, now: float | None = None
) -> dict[str, dict]:
    """How fast each node's, agent's or tag value's mean rises over the window:
    {name: {"growth": a share of the mean per minute (0.01: 1 %/min), "avg": the window's mean,
    "count": points, "precision": the points' sum of squared distances from their mean time, in
    minutes squared (the slope's sampling error goes as 1/sqrt of it)}}.

    The growth is the least-squares slope of the group's minute means against each minute's
    middle (the running minute's: the middle of what has elapsed), each minute weighted by its
    points, over the window's mean. It answers a leak while it is young: a level still within
    a group's usual range can already rise faster than any other group's. A group with points
    in fewer than two minutes, or a mean of 0, has no growth (absent)."""
    if not 60 <= window_s <= MAX_GROWTH_WINDOW_S + 60:  # and the running minute
        raise QueryError("window", f"growth is read over 1 min to {MAX_GROWTH_WINDOW_S // 3600} h")
    members = _members(metric, by, scope, None)
    if members is None:
        return {}
    now = time.time() if now is None else now
    start, end = window(window_s, now)
    params = {"keys": _array(members.ids.tolist()), "start": start, "end": end, "h0": end, "h1": end}
    with binary_cursor() as cur:
        cur.execute(_MEANS, params)  # h0 = h1: minute rows only
        fetched = cur.fetchall()
    if not fetched:
        return {}
    key, minute, n, total = (np.array(column) for column in zip(*fetched, strict=True))
    # One cell per group and minute (a group's keys, and minute rows beside unfolded deltas).
    steps = (end - start) // 60
    cell, at = np.unique(members.of(key) * steps + (minute - start) // 60, return_inverse=True)
    label, step = np.divmod(cell, steps)
    w, y = np.bincount(at, n).astype(float), np.bincount(at, total)
    y /= w  # each cell's mean
    x = (step * 60 + np.minimum(60, now - (start + step * 60)) / 2) / 60  # minutes into the window
    groups = len(members.names)
    weight = np.bincount(label, w, groups)
    minutes = np.bincount(label, minlength=groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_mean = np.bincount(label, w * x, groups) / weight
        y_mean = np.bincount(label, w * y, groups) / weight
        dx = x - x_mean[label]
        sxx = np.bincount(label, w * dx**2, groups)
        share = np.bincount(label, w * dx * (y - y_mean[label]), groups) / sxx / np.abs(y_mean)
    return {
        members.names[i]: {
            "growth": float(share[i]),
            "avg": float(y_mean[i]),
            "count": int(weight[i]),
            "precision": float(sxx[i]),
        }
        for i in np.flatnonzero((minutes >= 2) & np.isfinite(share)).tolist()
    }


def key_totals(ids: list[int], start: int, end: int, h0: int, h1: int) -> list[tuple]:
    """(key, count, sum, min, max) per key over [start, end), summed in PostgreSQL."""
    with binary_cursor() as cur:
        cur.execute(_TOTALS, {"keys": _array(ids), "start": start, "end": end, "h0": h0, "h1": h1})
        return cur.fetchall()


def _totals(
    ids: np.ndarray, member: np.ndarray, names: list[str], bounds: tuple[int, int, int, int], elapsed: float
) -> dict[str, dict]:
    """count, min, max, avg, sum and rate per name, never reading a sketch: for a thousand
    agents' memory that is far less work."""
    fetched = key_totals(ids.tolist(), *bounds)
    if not fetched:
        return {}
    key, n, total, lo, hi = (np.array(column) for column in zip(*fetched, strict=True))
    label = member[np.searchsorted(ids, key)]
    count, sums = np.zeros(len(names), np.int64), np.zeros(len(names))
    low, high = np.full(len(names), np.inf), np.full(len(names), -np.inf)
    np.add.at(count, label, n)
    np.add.at(sums, label, total)
    np.minimum.at(low, label, lo)
    np.maximum.at(high, label, hi)
    present = np.nonzero(count)[0]
    columns = (count[present], low[present], high[present], sums[present])
    return {  # from plain lists: converting numpy scalars one by one would take longer than the read
        names[i]: _plain(c, total, lo, hi, elapsed)
        for i, c, lo, hi, total in zip(present.tolist(), *(col.tolist() for col in columns), strict=True)
    }


def _plain(count: int, total: float, lo: float, hi: float, elapsed: float) -> dict:
    return {"count": count, "min": lo, "max": hi, "avg": total / count, "sum": total, "rate": count / elapsed}


# What `top` can rank groups by: statistics PostgreSQL sums up without the sketches.
RANKS = {"count": "n", "sum": "s", "max": "hi", "avg": "s / n"}

# Each group's totals over the window, from its keys (`keys`, each labelled in `labels`).
_GROUPS = (
    "WITH m AS (SELECT * FROM unnest(%(keys)s::int4[], %(labels)s::int4[]) AS m(key_id, label)), "
    "g AS (SELECT m.label, sum(w.n)::int8 AS n, sum(w.s)::float8 AS s, min(w.lo) AS lo, max(w.hi) AS hi "
    "FROM (" + _in_window(_SUMMED) + ") w JOIN m USING (key_id) GROUP BY m.label) "
)
# The first %(n)s groups by a statistic (v), ties by name, then one row (label -1) for all
# the others together: their totals, how many groups it merges and their statistic added up.
_RANKED = {
    rank: _GROUPS
    + f"""
, r AS (SELECT *, ({stat})::float8 AS v, row_number() OVER (ORDER BY {stat} DESC, label) AS place FROM g)
SELECT place, label, n, s, lo, hi, 1::int8, v FROM r WHERE place <= %(n)s::int8
UNION ALL
SELECT %(n)s::int8 + 1, -1, sum(n)::int8, sum(s)::float8, min(lo), max(hi), count(*), sum(v)
  FROM r WHERE place > %(n)s::int8 HAVING count(*) > 0
ORDER BY 1"""
    for rank, stat in RANKS.items()
}
_VALUES = {
    rank: _GROUPS + f"SELECT coalesce(array_agg(({stat})::float8), '{{}}') FROM g"
    for rank, stat in RANKS.items()
}
# The rows of the first groups' keys, then the other groups' rows merged into one (key -1):
# its sketch is all of theirs end to end, which merging adds up like any rows' sketches.
_FIRST_AND_REST = (
    _READ
    + " UNION ALL SELECT -1, 0::int8, sum(n)::int8, sum(s)::float8, min(lo), max(hi), "
    + "string_agg(sk, ''::bytea) FROM ("
    + _in_window("{t}.count AS n, {t}.sum AS s, {t}.min AS lo, {t}.max AS hi, {t}.sketch AS sk", "rest")
    + ") o HAVING count(*) > 0"
)


@dataclass
class Top:
    """A breakdown's first groups by one statistic, and every other group merged into one."""

    rows: dict[str, dict]  # name -> statistics, first ranked first
    others: dict | None  # the same statistics over all the other groups' points (None: no others)
    folded: int  # how many groups `others` merges
    folded_sum: float  # the ranked statistic of each folded group, added up
    values: list[float] | None = None  # the ranked statistic of every group, if asked


def top(
    metric: str,
    window_s: int,
    by: str,
    n: int,
    scope: Scope = FLEET,
    now: float | None = None,
    percentiles: bool = True,
    rank: str = "count",
    names: Collection[str] | None = None,
    every_value: bool = False,
) -> Top:
    """The `n` groups of a breakdown (see `breakdown`) with the highest `rank` (count, sum,
    max or avg over the window; ties by name), and one "others" row that merges the rest.
    Groups are ranked in PostgreSQL, so a read costs the first groups' rows and one merged row
    whatever the number of groups; the others' percentiles come from their merged sketches, as
    precise as any row's. `every_value`: also each group's `rank` statistic, for a distribution."""
    if rank not in RANKS:
        raise QueryError("rank", f"rank must be one of {', '.join(RANKS)}")
    members = _members(metric, by, scope, names)
    if members is None:
        return Top({}, None, 0, 0.0, [] if every_value else None)
    now = time.time() if now is None else now
    bounds = _bounds(window_s, now)
    elapsed = min(bounds[1], now) - bounds[0]  # the last minute is still running
    params = {
        **_window_params(bounds),
        "keys": _array(members.ids.tolist()),
        "labels": _array(members.label.tolist()),
    }
    with binary_cursor() as cur:
        cur.execute(_RANKED[rank], {**params, "n": n})
        ranked = cur.fetchall()
        values = None
        if every_value:
            cur.execute(_VALUES[rank], params)
            values = cur.fetchone()[0]
    first = [row for row in ranked if row[1] >= 0]
    rest = ranked[-1] if ranked and ranked[-1][1] < 0 else None
    if rest is None:
        others, folded, folded_sum = None, 0, 0.0
    else:
        others, folded, folded_sum = _plain(*rest[2:6], elapsed), rest[6], rest[7]
    if percentiles and rest is not None and (whole := _partitioned(metric, by, scope, names)):
        rows, others = _first_and_whole(members, [row[1] for row in first], whole, rest, bounds, elapsed)
    elif percentiles:
        rows, others = _first_and_rest(members, [row[1] for row in first], bounds, elapsed)
    else:
        rows = {members.names[label]: _plain(c, s, lo, hi, elapsed) for _, label, c, s, lo, hi, _, _ in first}
    return Top(rows, others, folded, folded_sum, values)


def _window_params(bounds: tuple[int, int, int, int]) -> dict[str, int]:
    return dict(zip(("start", "end", "h0", "h1"), bounds, strict=True))


def _first_and_rest(
    members: Members, first: list[int], bounds: tuple[int, int, int, int], elapsed: float
) -> tuple[dict[str, dict], dict | None]:
    """Statistics of the groups `first` (in that order), and of all the others merged."""
    chosen = np.isin(members.label, first)
    params = {
        **_window_params(bounds),
        "keys": _array(members.ids[chosen].tolist()),
        "rest": _array(members.ids[~chosen].tolist()),
    }
    with binary_cursor() as cur:
        cur.execute(_FIRST_AND_REST, params)
        rows = Rows.of(cur.fetchall())
    merged = rows.key < 0
    others_label = len(members.names)
    label = np.where(merged, others_label, members.of(np.where(merged, members.ids[0], rows.key)))
    g = _summaries(rows, label)
    stats = {int(lab): _stat_values(g, i, elapsed) for i, lab in enumerate(g.label)}
    return {members.names[lab]: stats[lab] for lab in first if lab in stats}, stats.get(others_label)


def _partitioned(metric: str, by: str, scope: Scope, names: Collection[str] | None) -> list[int]:
    """The scope's own keys, when its points are split between the groups (each point has one
    node and one agent, and rolls up to the fleet's key too); else none."""
    if by not in ("node", "agent") or names is not None or scope.node or scope.agent:
        return []
    return keys.ids(metric, scope)


def _first_and_whole(
    members: Members, first: list[int], whole: list[int], rest: tuple, bounds: tuple, elapsed: float
) -> tuple[dict[str, dict], dict]:
    """As `_first_and_rest`, the others' sketch being the whole scope's less the first groups':
    one read of a few keys' rows, not of every other group's (a thousand agents over a week).
    Counts per sketch bin subtract exactly; the others' count, sum, minimum and maximum are the
    ranking's (`rest`), so their percentiles are clamped into their own range."""
    chosen = np.isin(members.label, first)
    rows = read_rows(sorted({*members.ids[chosen].tolist(), *whole}), *bounds)
    of_whole = np.isin(rows.key, whole)
    firsts, everything = rows.where(~of_whole), rows.where(of_whole)
    less = replace(firsts, count=-firsts.count, sum=-firsts.sum, pair_count=-firsts.pair_count)
    others_label = len(members.names)
    label = np.concatenate(
        [members.of(firsts.key), np.full(len(everything.key) + len(less.key), others_label)]
    )
    g = _summaries(Rows.concat(Rows.concat(firsts, everything), less), label)
    if others_label not in g.label:  # the window's rows dropped since the ranking (retention)
        return _first_and_rest(members, first, bounds, elapsed)
    stats = {}
    for i, lab in enumerate(g.label):
        if lab == others_label:
            g.min[i], g.max[i] = rest[4], rest[5]
        stats[int(lab)] = _stat_values(g, i, elapsed)
    others = {**stats[others_label], **_plain(*rest[2:6], elapsed)}
    return {members.names[lab]: stats[lab] for lab in first if lab in stats}, others


def peaks(
    metric: str, window_s: int, scope: Scope = FLEET, now: float | None = None
) -> list[tuple[str, str, int, float]]:
    """(node, agent, minute start, maximum) of every agent in the scope, minute by minute
    (windows within the minute rollups' retention)."""
    _check(metric)
    start, end = window(window_s, now)
    by_id = {k.id: k for k in keys.agents(metric, scope)}
    if not by_id:
        return []
    with binary_cursor() as cur:
        cur.execute(_PEAKS, {"keys": _array(sorted(by_id)), "start": start, "end": end, "h0": end, "h1": end})
        return [(by_id[k].node, by_id[k].agent, minute, hi) for k, minute, hi in cur.fetchall()]
