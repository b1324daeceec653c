"""What the capacity page shows, from the stored forecasts, with the what-if growth applied:
for each target a chart of the fleet (and of one node, for per-node targets), the time to
limit of every subject, and the recommended node count."""

from __future__ import annotations

import time

from perfdash.forecasting import capacity
from perfdash.forecasting.models import CapacityForecast, CapacityTarget
from perfdash.lib.durations import DAY_S


def build(growth: float, node: str = "", now: float | None = None) -> dict:
    now = time.time() if now is None else now
    targets = CapacityTarget.all_kinds()
    stored: dict[int, list[CapacityForecast]] = {t.id: [] for t in targets}
    for row in CapacityForecast.objects.filter(target__in=targets):
        stored[row.target_id].append(row)
    fitted = [r.fitted_at for rows in stored.values() for r in rows]
    return {
        "view": {"page": "capacity", "growth": round(growth * 100, 2), "node": node},
        "fitted_at": max(fitted).isoformat() if fitted else None,
        "targets": [_target(t, stored[t.id], growth, node, now) for t in targets if t.enabled],
    }


def _target(
    target: CapacityTarget, rows: list[CapacityForecast], growth: float, node: str, now: float
) -> dict:
    out = {
        "kind": target.kind,
        "title": str(target),
        "unit": target.unit,
        "sized_in": target.sized_in,
        "headroom": target.headroom,
        "horizon_days": target.horizon_days,
        "subjects": [],
        "charts": [],
        "summary": "not fitted yet",
        "recommendation": None,
    }
    if not rows:
        return out
    looks = {r.subject: (r, capacity.assess(r, target, now, growth)) for r in rows}
    subjects = sorted((_subject(r, o, now) for r, o in looks.values()), key=_urgency)
    out["subjects"] = subjects
    nodes = [s for s in subjects if s["subject"]]
    worst = nodes[0]["subject"] if nodes else ""
    shown = [""] + ([node if node in looks and node else worst] if nodes else [])
    out["charts"] = [_chart(*looks[s], target, now) for s in shown]
    out["summary"] = _sentence(target, subjects[0] if not nodes else nodes[0])
    fleet_row, fleet_look = looks.get("", (None, None))
    fleet_horizon = next((s["horizon"] for s in subjects if not s["subject"]), "")
    if fleet_row is not None and fleet_look.recommended is not None:
        # Ingest workers are not counted anywhere perfdash can see.
        current = None if target.kind == target.Kind.FLEET_POINTS else fleet_row.current_nodes
        out["recommendation"] = {
            "nodes": fleet_look.recommended,
            "current": current,
            "text": _recommend(target, fleet_look.recommended, current, fleet_horizon),
            "why": fleet_look.explain,
        }
    return out


def _subject(row: CapacityForecast, look: capacity.Outlook, now: float) -> dict:
    at, earliest, latest = look.crossing.days(now)
    ahead = (look.forecast.times[-1] - now) / DAY_S if row.ok and len(look.forecast.times) else 0.0
    return {
        "subject": row.subject,
        "ok": row.ok,
        "reason": row.reason,
        "horizon": _ahead(ahead),
        "now": row.history["y"][-1] if row.history.get("y") else None,
        "limit": row.limit,
        "days": at,
        "earliest_days": earliest,
        "latest_days": latest,
        "model": look.forecast.model,
        "mase": row.backtest_mase,
        "fitted_at": row.fitted_at.isoformat(),
    }


def _urgency(s: dict) -> tuple:
    # Soonest crossing first; then the closest to its limit; subjects with no forecast last.
    ratio = (s["now"] or 0) / s["limit"] if s["limit"] else 0
    return (not s["ok"], s["days"] is None, s["days"] or 0, -ratio)


def _chart(row: CapacityForecast, look: capacity.Outlook, target: CapacityTarget, now: float) -> dict:
    fc = look.forecast
    return {
        "subject": row.subject,
        "ok": row.ok,
        "reason": row.reason,
        "model": fc.model,
        "mase": row.backtest_mase,
        "notes": fc.notes,
        "limit": row.limit,
        "history": {"t": row.history.get("t", []), "y": _short(row.history.get("y", []))},
        "forecast": {
            "t": fc.times.tolist(),
            **{b: _short(getattr(fc, b).tolist()) for b in capacity.BANDS},
        },
        "crossing": {
            "at": look.crossing.at,
            "earliest": look.crossing.earliest,
            "latest": look.crossing.latest,
        },
        "horizon_end": float(fc.times[-1]) if len(fc.times) else now,
    }


def _short(values: list[float]) -> list[float]:
    return [float(f"{v:.5g}") for v in values]


def _sentence(target: CapacityTarget, s: dict) -> str:
    who = s["subject"] or "The fleet"
    limit = capacity.format_value(s["limit"], target.unit)
    if not s["ok"]:
        return f"{who}: no forecast ({s['reason']})"
    if s["days"] is None:
        return f"{who} stays under {limit} through the next {s['horizon']}."
    if s["days"] <= 0:
        return f"{who} is at or over {limit} now."
    return (
        f"{who} reaches {limit} in {_ahead(s['days'])} "
        f"(80 % interval {_ahead(s['earliest_days'])} to {_ahead(s['latest_days'])})."
    )


def _ahead(days: float | None) -> str:
    """A time ahead as people say it: "now", "5 h", "4.2 days", "30 days", "beyond the horizon"."""
    if days is None:
        return "beyond the horizon"
    if days <= 0:
        return "now"
    if days < 1:
        return "under an hour" if days * 24 < 1 else f"{days * 24:.0f} h"
    return f"{f'{days:.1f}'.removesuffix('.0')} days"


def _recommend(target: CapacityTarget, nodes: int, current: int | None, horizon: str) -> str:
    keep = f"to keep {target.headroom:.0%} headroom through the next {horizon}"
    noun = target.sized_in if nodes != 1 else target.sized_in.removesuffix("s")
    if current is None:
        return f"{nodes} {noun} {keep}."
    if nodes > current:
        return f"{nodes} {noun} (now {current}): add {nodes - current} {keep}."
    if nodes < current:
        return f"{nodes} {noun} would do (now {current}) {keep}."
    return f"{nodes} {noun} (now {current}): enough {keep}."
