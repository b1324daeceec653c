"""The SLO page's data: each enabled SLO's status (perfdash/detect/slo.py) with its burn-down,
the part of the fleet that spent most of its budget, and its figures as people read them."""

from __future__ import annotations

import time

from perfdash.detect import slo
from perfdash.detect.models import SLO
from perfdash.lib import units
from perfdash.lib.durations import DAY_S, HOUR_S

PRECISION_NOTE = (
    "A latency SLO's good points are counted from the rollup sketches: a point within 1 % of the "
    "threshold may be counted on either side of it."
)


def build(now: float | None = None) -> dict:
    now = time.time() if now is None else now
    rows = []
    for s in SLO.objects.filter(enabled=True):
        status = slo.status(s, now, detail=True)
        status["shown"] = _shown(s, status)
        status["burn_thresholds"] = {
            severity_window: slo.burn_threshold(share, long_window, s.period_days)
            for severity_window, (_, long_window, _, share) in zip(
                ("page_1h", "page_6h", "ticket_3d"), slo.PAIRS, strict=True
            )
        }
        rows.append(status)
    return {"slos": rows, "note": PRECISION_NOTE}


def _shown(s: SLO, status: dict) -> dict:
    if s.kind == SLO.Kind.LATENCY:
        good = f"{s.metric} at or below {units.readable(s.threshold, units.of_metric(s.metric, 'p50'))}"
    else:
        good = f"{s.metric} ({s.counts} events) over the events of {s.total_metric}"
    return {
        "what": f"{s.objective * 100:g} % of {good}, over {s.period_days} days",
        "attainment": _percent(status["attainment"]),
        "budget_left": _percent(status["budget_left"]),
        "time_left": _time_left(status["budget_left"], status["budget_left_s"]),
        "burn_rates": {w: "n/a" if r is None else f"{r:.2f}x" for w, r in status["burn_rates"].items()},
    }


def _percent(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 100:.2f} %" if abs(x) < 1 else f"{x * 100:.0f} %"


def _time_left(budget_left: float | None, seconds: float | None) -> str:
    if budget_left is None:
        return "n/a"
    if budget_left <= 0:
        return "budget spent"
    if seconds is None:
        return "not burning"
    if seconds >= DAY_S:
        return f"{seconds / DAY_S:.1f} days"
    return f"{seconds / HOUR_S:.1f} hours"
