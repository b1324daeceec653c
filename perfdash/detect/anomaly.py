"""Seasonal anomalies that explain themselves: is a statistic's value over the last hour far
from what this time of day (and day of the week) usually brings?

The baseline is learned from the hourly values of the statistic over the last `HISTORY_DAYS`
days, robustly: for the hour of the day at hand, the median of that hour's values over the
days (the expected value) and their median absolute deviation scaled to a standard deviation
(the spread, at least `FLOOR` of the expected value, twice a sketch percentile's precision).
With two weeks or more of history, the expected value is scaled by the weekday's own level
(the median, over that weekday's days, of each hour's value over its hour's median), so a
quiet Sunday is not an anomaly. It needs `MIN_DAYS` days of that hour, else there is no
baseline ("not enough history"). The last hour's value is compared with the expected value
of the hour it ends in, interpolated between neighbouring hours, and said in MADs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from perfdash.lib import units
from perfdash.lib.durations import DAY_S, HOUR_S
from perfdash.metrics import query
from perfdash.metrics.scope import Scope

HISTORY_DAYS = 28
MIN_DAYS = 7
WEEKDAYS_FROM_DAYS = 14  # history needed before each weekday gets a level of its own
MAD_TO_SD = 1.4826
FLOOR = 0.02


@dataclass(frozen=True)
class Judged:
    value: float | None  # the statistic over the last hour
    expected: float | None
    band: tuple[float, float] | None
    mads: float | None  # signed: above (+) or below (-) the expected value
    days: int  # days of history the baseline rests on
    weekly: bool  # whether the weekday's own level counts
    at: float  # the end of the hour judged

    def anomalous(self, tolerance: float) -> bool:
        return self.mads is not None and abs(self.mads) > tolerance

    def as_json(self, tolerance: float) -> dict:
        return {
            "value": self.value,
            "expected": self.expected,
            "band": list(self.band) if self.band else None,
            "mads": None if self.mads is None else round(self.mads, 2),
            "history_days": self.days,
            "weekly": self.weekly,
            "anomalous": self.anomalous(tolerance),
        }


@dataclass(frozen=True)
class Baseline:
    """Each hour of the day's expected value and spread (NaN where it has fewer than MIN_DAYS
    days), each weekday's level, and what they rest on."""

    median: np.ndarray  # (24,)
    spread: np.ndarray  # (24,)
    level: np.ndarray  # (7,) by weekday, Monday first; all 1 before WEEKDAYS_FROM_DAYS
    days: int
    weekly: bool

    def at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The expected value and spread at times `t` (NaN where there is no baseline):
        between the two hours whose middles surround each time, times its weekday's level."""
        position = (np.asarray(t, float) % DAY_S) / HOUR_S - 0.5
        below = np.floor(position).astype(int) % 24
        weight = position - np.floor(position)
        above = (below + 1) % 24
        level = self.level[((np.asarray(t, float) // DAY_S).astype(int) + 3) % 7]  # 1970-01-01: a Thursday
        expected = ((1 - weight) * self.median[below] + weight * self.median[above]) * level
        spread = ((1 - weight) * self.spread[below] + weight * self.spread[above]) * level
        return expected, spread


def baseline(metric: str, stat: str, scope: Scope, before: float, now: float | None = None) -> Baseline:
    """Learned from the hourly values of the last HISTORY_DAYS days that ended by `before`."""
    now = time.time() if now is None else now
    hours = query.series(metric, HISTORY_DAYS * DAY_S, HOUR_S, stat, scope, now)
    t = np.array([s for s, _ in hours], float)
    v = np.array([np.nan if x is None else x for _, x in hours], float)
    kept = (t + HOUR_S <= before) & ~np.isnan(v)
    t, v = t[kept], v[kept]
    hour_of_day = ((t % DAY_S) // HOUR_S).astype(int)
    median, spread = np.full(24, np.nan), np.full(24, np.nan)
    for h in range(24):
        values = v[hour_of_day == h]
        if len(values) >= MIN_DAYS:
            median[h] = np.median(values)
            spread[h] = max(MAD_TO_SD * float(np.median(np.abs(values - median[h]))), FLOOR * abs(median[h]))
    days = len(np.unique((t // DAY_S).astype(int)))
    weekly = days >= WEEKDAYS_FROM_DAYS
    level = np.ones(7)
    if weekly:
        weekday = ((t // DAY_S).astype(int) + 3) % 7
        ratios = v / median[hour_of_day]
        for d in range(7):
            r = ratios[(weekday == d) & np.isfinite(ratios)]
            if len(r) >= 2 * MIN_DAYS:
                level[d] = np.median(r)
    return Baseline(median, spread, level, days, weekly)


# A judged hour's baseline rests on the hours that ended before it, which change only when an
# hour ends: it is fitted once an hour per process, not on every evaluation pass or live
# update. Scopes come from rules and from the pages' filters: past FITTED_MOST, all are dropped.
FITTED_MOST = 256
_fitted: dict[tuple[str, str, Scope], Baseline] = {}
_fitted_hour: list[int] = [-1]


def fitted(metric: str, stat: str, scope: Scope, now: float) -> Baseline:
    """The baseline of the hours that ended before the hour up to `now`, refit when the hour
    changes: what `judge` compares with, and the charts' usual band."""
    hour = int(now // HOUR_S)
    if hour != _fitted_hour[0] or len(_fitted) >= FITTED_MOST:
        _fitted.clear()
        _fitted_hour[0] = hour
    key = (metric, stat, scope)
    found = _fitted.get(key)  # one look: another thread may clear the cache meanwhile
    if found is None:
        found = _fitted[key] = baseline(metric, stat, scope, now - HOUR_S, now)
    return found


def forget() -> None:
    _fitted.clear()
    _fitted_hour[0] = -1


def judge(metric: str, stat: str, scope: Scope, tolerance: float, now: float | None = None) -> Judged:
    """The statistic over the last hour against the baseline of the hours before it."""
    now = time.time() if now is None else now
    current = query.stats(metric, HOUR_S, scope, now).get(stat)
    base = fitted(metric, stat, scope, now)
    expected, spread = (float(x[0]) for x in base.at(np.array([now - HOUR_S / 2])))
    if math.isnan(expected) or current is None:
        return Judged(current, None, None, None, base.days, base.weekly, now)
    band = (expected - tolerance * spread, expected + tolerance * spread)
    return Judged(float(current), expected, band, (current - expected) / spread, base.days, base.weekly, now)


def band(base: Baseline, times: list[float], tolerance: float) -> dict | None:
    """The usual band at `times`, for a chart: {"lo": [...], "hi": [...]} (None where there
    is no baseline), or None without any."""
    expected, spread = base.at(np.array(times, float))
    if np.isnan(expected).all():
        return None
    lo = expected - tolerance * spread
    lo = np.where(expected > 0, np.maximum(lo, 0.0), lo)  # a positive quantity's band stops at 0

    def listed(x: np.ndarray) -> list[float | None]:
        return [None if math.isnan(v) else float(v) for v in x]

    return {"lo": listed(lo), "hi": listed(expected + tolerance * spread)}


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def explain(metric: str, stat: str, j: Judged) -> str:
    """ "p95 2.8 s, expected 1.9 s (band 1.7 s to 2.2 s) for Friday 15:00 from the last 28 days;
    4.5 MADs above"."""
    kind = units.of_metric(metric, stat)
    if j.expected is None:
        return f"{stat} of {metric}: not enough history for a baseline ({j.days} days; {MIN_DAYS} needed)"
    moment = datetime.fromtimestamp(j.at - HOUR_S / 2, UTC)
    when = f"{WEEKDAYS[moment.weekday()]} {moment:%H:%M} UTC" if j.weekly else f"{moment:%H:%M} UTC"
    lo, hi = (units.readable(x, kind) for x in j.band)
    side = "above" if j.mads >= 0 else "below"
    return (
        f"{stat} {units.readable(j.value, kind)}, expected {units.readable(j.expected, kind)} "
        f"(band {lo} to {hi}) for {when} from the last {j.days} days; {abs(j.mads):.1f} MADs {side}"
    )
