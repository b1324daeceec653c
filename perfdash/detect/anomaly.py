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


def judge(metric: str, stat: str, scope: Scope, tolerance: float, now: float | None = None) -> Judged:
    now = time.time() if now is None else now
    hours = query.series(metric, HISTORY_DAYS * DAY_S, HOUR_S, stat, scope, now)
    current = query.stats(metric, HOUR_S, scope, now).get(stat)
    t = np.array([s for s, _ in hours], float)
    v = np.array([np.nan if x is None else x for _, x in hours], float)
    past = t + HOUR_S <= now - HOUR_S  # hours wholly before the one judged
    t, v = t[past], v[past]
    expected, spread, days, weekly = _expected(t, v, now)
    if expected is None or current is None:
        return Judged(current, None, None, None, days, weekly, now)
    band = (expected - tolerance * spread, expected + tolerance * spread)
    return Judged(float(current), expected, band, (current - expected) / spread, days, weekly, now)


def _expected(t: np.ndarray, v: np.ndarray, now: float) -> tuple[float | None, float, int, bool]:
    """The expected value at `now - 30 min` (the middle of the last hour), its spread, the
    days of history of that hour, and whether weekdays count."""
    ok = ~np.isnan(v)
    t, v = t[ok], v[ok]
    hour_of_day = ((t % DAY_S) // HOUR_S).astype(int)
    day = (t // DAY_S).astype(int)
    days = len(np.unique(day))
    middle = now - HOUR_S / 2
    # Between the two hours whose middles surround `middle`.
    position = (middle % DAY_S) / HOUR_S - 0.5
    below = math.floor(position) % 24
    weight = position - math.floor(position)
    profile = {}
    for h in (below, (below + 1) % 24):
        values = v[hour_of_day == h]
        if len(values) < MIN_DAYS:
            return None, 0.0, days, False
        median = float(np.median(values))
        spread = max(MAD_TO_SD * float(np.median(np.abs(values - median))), FLOOR * abs(median))
        profile[h] = (median, spread)
    expected = (1 - weight) * profile[below][0] + weight * profile[(below + 1) % 24][0]
    spread = (1 - weight) * profile[below][1] + weight * profile[(below + 1) % 24][1]
    weekly = days >= WEEKDAYS_FROM_DAYS
    if weekly:
        level = _weekday_level(t, v, hour_of_day, int(middle // DAY_S + 3) % 7)
        expected, spread = expected * level, spread * level
    return expected, spread, days, weekly


def _weekday_level(t: np.ndarray, v: np.ndarray, hour_of_day: np.ndarray, weekday: int) -> float:
    """The weekday's level against all days: the median, over that weekday's hours, of each
    value over its hour of the day's median (1 when the weekday has too few)."""
    medians = np.array(
        [np.median(v[hour_of_day == h]) if (hour_of_day == h).any() else np.nan for h in range(24)]
    )
    on_day = (t // DAY_S + 3).astype(int) % 7 == weekday  # 1970-01-01 was a Thursday (3)
    ratios = v[on_day] / medians[hour_of_day[on_day]]
    ratios = ratios[np.isfinite(ratios)]
    return float(np.median(ratios)) if len(ratios) >= 2 * MIN_DAYS else 1.0


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
