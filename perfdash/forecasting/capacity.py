"""Capacity planning: fit every enabled target, store the forecasts, and assess them (time
to limit, recommended nodes), with or without what-if growth.

The arithmetic is in `forecast.py`; this module reads histories, stores rows and puts the
pieces together, the same way for the hourly refit, the page and the forecast alert.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.db import connection, transaction

from perfdash.forecasting import history
from perfdash.forecasting.forecast import (
    DAY_S,
    WEEK_S,
    Crossing,
    Forecast,
    LoadFit,
    forecast,
    load_fit,
    nodes_for_latency,
    nodes_needed,
    time_to_limit,
    what_if,
)
from perfdash.forecasting.models import CapacityForecast, CapacityTarget

_LOCK_ID = 0x666F7265  # "fore": one refit at a time
BANDS = ("mean", "lower80", "upper80", "lower95", "upper95")


def refit(now: float | None = None) -> int | None:
    """Fit every enabled target and replace its stored forecasts; returns the rows written,
    or None if another refit is running."""
    now = time.time() if now is None else now
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_ID])
        if not cur.fetchone()[0]:
            return None
        try:
            written = 0
            for target in [t for t in CapacityTarget.all_kinds() if t.enabled]:
                rows = fit(target, now)
                with transaction.atomic():  # readers see the old forecasts or the new ones
                    target.forecasts.all().delete()
                    CapacityForecast.objects.bulk_create(rows)
                written += len(rows)
            CapacityForecast.objects.filter(target__enabled=False).delete()
            return written
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_ID])


def fit(target: CapacityTarget, now: float) -> list[CapacityForecast]:
    """Forecasts for the target's subjects (each node and the fleet, or the fleet alone)."""
    past = history.read(target.kind, target.history_days, now)
    fitted_at = datetime.fromtimestamp(now, UTC)
    series = past.series if "" in past.series else {**past.series, "": (np.empty(0), np.empty(0))}
    rows = []
    for subject, (t, y) in series.items():
        horizon = horizon_for(target, t, past.step_s)
        fc = forecast(t, y, horizon, past.step_s)
        if past.left_out:
            fc.notes.append(f"left out the newest {past.left_out} steps of history: still arriving")
        if fc.ok and horizon < target.horizon_days * DAY_S:
            fc.notes.append(
                f"horizon limited to twice the history ({horizon / 3600:.0f} h) until there is more"
            )
        row = CapacityForecast(
            target=target,
            subject=subject,
            fitted_at=fitted_at,
            ok=fc.ok,
            reason=fc.reason,
            model=fc.model,
            backtest_mase=fc.backtest_mase,
            step_s=past.step_s,
            limit=target.limit_for(subject, past.nodes),
            history={"t": t.tolist(), "y": y.tolist()},
            bands={"t": fc.times.tolist(), **{b: getattr(fc, b).tolist() for b in BANDS}},
            notes=fc.notes,
        )
        if not subject:
            row.current_nodes = past.nodes
            row.sizing = _latency_sizing(past, target) if target.kind == target.Kind.RESPONSE_P95 else {}
        outlook = assess(row, target, now)
        row.crossing_at, row.crossing_earliest, row.crossing_latest = (
            _datetime(t) for t in (outlook.crossing.at, outlook.crossing.earliest, outlook.crossing.latest)
        )
        row.recommended_nodes = outlook.recommended
        rows.append(row)
    return rows


def horizon_for(target: CapacityTarget, times: np.ndarray, step_s: int) -> float:
    """The target's horizon, but never more than twice as far ahead as the history reaches
    back: six hours of a new installation say nothing about the next 30 days."""
    span = float(times[-1] - times[0]) if len(times) else 0.0
    return min(target.horizon_days * DAY_S, max(step_s, 2 * span))


def _latency_sizing(past: history.History, target: CapacityTarget) -> dict:
    """How response p95 follows agents per node, and the peak agent count ahead."""
    times, p95 = past.series[""]
    load_t, per_node = past.load["per_node"]
    _, i, j = np.intersect1d(times, load_t, return_indices=True)
    relation = load_fit(per_node[j], p95[i])
    horizon = horizon_for(target, past.load[""][0], past.step_s)
    agents = forecast(*past.load[""], horizon, past.step_s)
    peak = float(np.max(agents.upper80)) if agents.ok else None
    return {
        "fit": None if relation is None else relation.__dict__,
        "peak_agents": peak,
        "horizon_weeks": horizon / WEEK_S,
    }


@dataclass
class Outlook:
    forecast: Forecast
    crossing: Crossing
    recommended: int | None  # on the fleet row only
    explain: str


def assess(row: CapacityForecast, target: CapacityTarget, now: float, growth: float = 0.0) -> Outlook:
    """Time to limit and recommended nodes of a stored row, with `growth` extra per week."""
    fc = stored_forecast(row)
    latency = target.kind == target.Kind.RESPONSE_P95
    if growth and not latency:  # extra growth is in load; latency follows it through the load fit
        fc = what_if(fc, growth)
    crossing = time_to_limit(fc, row.limit, now) if fc.ok else Crossing(False, None, None, None)
    if row.subject or not fc.ok:  # without a forecast of its own, a target recommends nothing
        return Outlook(fc, crossing, None, "")
    if latency:
        return Outlook(fc, crossing, *_latency_nodes(row, target, growth))
    nodes = nodes_needed(fc, target.capacity_per_node(), target.headroom)
    peak = format_value(float(fc.upper80.max()), target.unit)
    explain = f"keeps {target.headroom:.0%} headroom at the forecast's peak (upper 80 % bound) of {peak}"
    return Outlook(fc, crossing, nodes, explain)


def _latency_nodes(row: CapacityForecast, target: CapacityTarget, growth: float) -> tuple[int | None, str]:
    sizing = row.sizing or {}
    if sizing.get("peak_agents") is None:
        return None, "no forecast of active agents to size from"
    relation = LoadFit(**sizing["fit"]) if sizing.get("fit") else None
    peak = sizing["peak_agents"] * (1 + growth) ** sizing["horizon_weeks"]
    return nodes_for_latency(relation, peak, row.limit, target.headroom, row.current_nodes or 1)


def stored_forecast(row: CapacityForecast) -> Forecast:
    if not row.ok:
        return Forecast(ok=False, reason=row.reason)
    arrays = {b: np.asarray(row.bands[b], float) for b in BANDS}
    return Forecast(
        True,
        "",
        row.model,
        row.backtest_mase,
        np.asarray(row.bands["t"], float),
        notes=list(row.notes),
        **arrays,
    )


def _datetime(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def format_value(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 1e9:.1f} GB"
    if unit == "ms":
        return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"
    return f"{value:,.0f} {unit}"
