"""Where each SLO stands: its attainment over the rolling period, the error budget left, how
fast it burns over 5 minutes to 3 days, and whether that calls for a page or a ticket.

Events per rollup row: for a latency SLO a point is good when it is at or below the
threshold, counted from the row's sketch (the bin that holds the threshold counts in
proportion, so the count is as precise as a bin is wide: 1 %); for a ratio SLO the counter's
values are the bad (or good) events, and the total metric's points (a counter's values) the
events. The budget is the share of bad events the objective allows (1 % for 99 %); a burn
rate of 1 spends it in exactly one period.

Alerting follows the SRE workbook's multi-window, multi-burn-rate pairs: both windows of a
pair above the burn rate that spends the pair's share of the budget in its long window (2 %
in 1 h: 14.4x over 30 days), the short window a twelfth of the long one, so an alert stops
soon after the burn does. The rates follow the period: 14.4x for 30 days is 3.4x for 7.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from perfdash.compare.compare import bin_edges
from perfdash.detect.models import SLO
from perfdash.lib.durations import DAY_S, HOUR_S
from perfdash.metrics import keys, query
from perfdash.metrics.scope import Scope

WINDOWS = {"5m": 300, "30m": 1800, "1h": HOUR_S, "6h": 6 * HOUR_S, "3d": 3 * DAY_S}
# (severity, long window, short window, share of the budget spent in the long window)
PAIRS = (("page", "1h", "5m", 0.02), ("page", "6h", "30m", 0.05), ("ticket", "3d", "6h", 0.10))
# Windows up to this long are read from minute rows, the period from hour rows.
MINUTES_S = 6 * HOUR_S


@dataclass
class Events:
    """Good and total events per rollup row, with the row's period start."""

    period: np.ndarray
    good: np.ndarray
    total: np.ndarray

    def since(self, start: float) -> tuple[float, float]:
        kept = self.period >= start
        return float(self.good[kept].sum()), float(self.total[kept].sum())


def burn_threshold(share: float, long_window: str, period_days: int) -> float:
    """The burn rate that spends `share` of the budget in the long window."""
    return share * period_days * DAY_S / WINDOWS[long_window]


def status(slo: SLO, now: float | None = None, detail: bool = False) -> dict:
    """{"id", "name", "metric", "objective", "period", "attainment", "budget_left",
    "budget_left_s", "burn_rates", "alerting", "total"}; with `detail`, also "burn_down"
    (hourly budget left over the period) and "top_spender" (the node, or the agent on a node's
    SLO, that spent most of the budget)."""
    now = time.time() if now is None else now
    period_s = slo.period_days * DAY_S
    start = now - period_s
    recent = events(slo, _scope(slo), now - MINUTES_S, now, minutes=True)
    whole = events(slo, _scope(slo), start, now, minutes=False)
    good, total = float(whole.good.sum()), float(whole.total.sum())
    allowed = 1 - slo.objective
    budget_left = 1 - (total - good) / (allowed * total) if total else None
    burn = {}
    for name, seconds in WINDOWS.items():
        g, t = (recent if seconds <= MINUTES_S else whole).since(now - seconds)
        burn[name] = ((t - g) / t) / allowed if t else None
    out = {
        "id": slo.id,
        "name": slo.name,
        "kind": slo.kind,
        "metric": slo.metric,
        "threshold": slo.threshold,
        "objective": slo.objective,
        "period": f"{slo.period_days}d",
        "total": total,
        "attainment": good / total if total else None,
        "budget_left": budget_left,
        "budget_left_s": _time_left(budget_left, burn["1h"], period_s),
        "burn_rates": burn,
        "alerting": alerting(burn, slo.period_days),
    }
    if detail:
        out["burn_down"] = burn_down(whole, allowed, total, start, now)
        out["top_spender"] = top_spender(slo, start, now, total - good)
    return out


def alerting(burn: dict[str, float | None], period_days: int) -> str | None:
    """ "page", "ticket" or None: the most severe pair whose two windows both burn too fast."""
    for severity, long_window, short_window, share in PAIRS:
        threshold = burn_threshold(share, long_window, period_days)
        if all((burn[w] or 0) >= threshold for w in (long_window, short_window)):
            return severity
    return None


def burn_over(burn: dict[str, float | None], period_days: int, severity: str) -> float | None:
    """The worst of the severity's pairs, as the burn over the rate that alerts: for each pair
    the lesser of its two windows' ratios (both must be above), so 1 or more alerts, and it
    drops below 1 as soon as the short window recovers. None without data."""
    found = []
    for level, long_window, short_window, share in PAIRS:
        if level != severity or burn[long_window] is None or burn[short_window] is None:
            continue
        threshold = burn_threshold(share, long_window, period_days)
        found.append(min(burn[long_window], burn[short_window]) / threshold)
    return max(found, default=None)


def _time_left(budget_left: float | None, burn: float | None, period_s: float) -> float | None:
    """Seconds until the budget is spent at the burn rate of the last hour (None: not burning,
    or nothing left)."""
    if budget_left is None or burn is None or burn <= 0 or budget_left <= 0:
        return None
    return budget_left * period_s / burn


def burn_down(whole: Events, allowed: float, total: float, start: float, now: float) -> dict:
    """The budget left at the end of each hour of the period, against the period's events so
    far: {"t": [...], "left": [...]}, ending at the budget left now. It starts, whole, at the
    start of the first hour with events: before them there is no budget to speak of, not a full
    one."""
    if not total:
        return {"t": [], "left": []}
    hour = ((whole.period - start) // HOUR_S).astype(np.int64)
    hours = int((now - start) // HOUR_S) + 1
    bad = np.bincount(hour, whole.total - whole.good, minlength=hours)[:hours]
    first = int(hour[whole.total > 0].min())
    left = np.concatenate([[1.0], 1 - np.cumsum(bad[first:]) / (allowed * total)])
    t = np.minimum(start + HOUR_S * np.arange(first, hours + 1), now)
    return {"t": t.tolist(), "left": left.tolist()}


def top_spender(slo: SLO, start: float, now: float, bad: float) -> dict | None:
    """The node (the agent, on a node's SLO) whose bad events spent most of the budget."""
    if bad <= 0 or slo.agent:
        return None
    by = "agent" if slo.node else "node"
    worst = None
    for key, name in keys.members(slo.metric, by, _scope(slo)) if slo.kind == SLO.Kind.LATENCY else []:
        e = _latency(slo, [key], start, now, minutes=False)
        spent = float((e.total - e.good).sum())
        if worst is None or spent > worst[1]:
            worst = (name, spent)
    if worst is None or worst[1] <= 0:
        return None
    return {"by": by, "name": worst[0], "share": worst[1] / bad}


def _scope(slo: SLO) -> Scope:
    return Scope(node=slo.node, agent=slo.agent, tag_key=slo.tag_key, tag_value=slo.tag_value)


def events(slo: SLO, scope: Scope, start: float, end: float, minutes: bool) -> Events:
    if slo.kind == SLO.Kind.LATENCY:
        return _latency(slo, keys.ids(slo.metric, scope), start, end, minutes)
    return _ratio(slo, scope, start, end, minutes)


def _rows(ids: list[int], start: float, end: float, minutes: bool) -> query.Rows:
    s, e = int(start // 60 * 60), int(-(-end // 60) * 60)
    h0, h1 = (e, e) if minutes else query.whole_hours(s, e)
    return query.read_rows(ids, s, e, h0, h1)


def _latency(slo: SLO, ids: list[int], start: float, end: float, minutes: bool) -> Events:
    rows = _rows(ids, start, end, minutes)
    lo, hi = bin_edges(rows.pair_key)
    width = np.where(hi > lo, hi - lo, 1.0)
    share = np.clip((slo.threshold - lo) / width, 0.0, 1.0)  # of each bin at or below the threshold
    good = np.bincount(rows.pair_row, rows.pair_count * share, minlength=len(rows.key))
    return Events(rows.period, good, rows.count.astype(float))


def _ratio(slo: SLO, scope: Scope, start: float, end: float, minutes: bool) -> Events:
    counted = _rows(keys.ids(slo.metric, scope), start, end, minutes)
    of_total = _rows(keys.ids(slo.total_metric, scope), start, end, minutes)
    periods = np.union1d(counted.period, of_total.period)
    n = np.zeros(len(periods))
    np.add.at(n, np.searchsorted(periods, counted.period), counted.sum)
    total = np.zeros(len(periods))
    events_of_total = of_total.sum if slo.total_metric.endswith("_total") else of_total.count
    np.add.at(total, np.searchsorted(periods, of_total.period), events_of_total)
    good = n if slo.counts == SLO.Counts.GOOD else np.maximum(total - n, 0.0)
    return Events(periods, np.minimum(good, total), total)
