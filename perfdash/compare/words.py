"""A comparison said in words, for the compare page, deploy verification and its alerts:
"version 1.3.0 is slower than version 1.2.0: p95 2.31 s vs 1.98 s, +17 % (95 % interval
+12 % to +22 %)"."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from perfdash.compare.cohorts import Cohort
from perfdash.compare.compare import FASTER, INSUFFICIENT, SLOWER, Comparison, Difference
from perfdash.lib import units


def labels(a: Cohort, b: Cohort) -> tuple[str, str]:
    """Names for the two cohorts that say how they differ: only what differs is named."""
    out = []
    for this, other in ((a, b), (b, a)):
        parts = []
        s, o = this.scope, other.scope
        if (s.tag_key, s.tag_value) != (o.tag_key, o.tag_value):
            parts.append(f"{s.tag_key} {s.tag_value}" if s.tag_key else "all versions and variants")
        if this.except_agent:
            parts.append(f"the other agents of node {s.node}")
        elif s.agent != o.agent:
            parts.append(f"agent {s.agent}" if s.agent else "the other agents")
        elif s.node != o.node:
            parts.append(f"node {s.node}" if s.node else "the fleet")
        if (this.start, this.end) != (other.start, other.end):
            parts.append(time_range(this))
        out.append(", ".join(parts))
    return out[0], out[1]


def time_range(c: Cohort) -> str:
    start = datetime.fromtimestamp(c.start, UTC)
    end = datetime.fromtimestamp(c.end, UTC)
    if start.date() == end.date():
        return f"{start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def value(metric: str, stat: str, x: float | None) -> str:
    return units.readable(x, units.of_metric(metric, stat))


def change(d: Difference, confidence: float) -> str:
    """ "+17 % (95 % interval +12 % to +22 %)"."""
    if d.rel is None:
        return "no relative change can be given"
    return (
        f"{units.percent(d.rel)} ({confidence * 100:g} % interval {units.percent(d.lo)} to "
        f"{units.percent(d.hi)})"
    )


def sentence(metric: str, result: Comparison, a: str, b: str, confidence: float, min_effect: float) -> str:
    """The verdict on the comparison's own statistic, with its values, change and interval."""
    stat = result.stat
    d = result.diff[stat]
    if d.verdict == INSUFFICIENT:
        why = next((n for n in result.notes if "fewer than" in n or "not above zero" in n), "")
        return f"Not enough data to compare {a} and {b}: {why}".rstrip(": ")
    va, vb = (e.value if e else None for e in (result.a[stat], result.b[stat]))
    values = f"{stat} {value(metric, stat, vb)} vs {value(metric, stat, va)}, {change(d, confidence)}"
    if d.verdict in (SLOWER, FASTER):
        word = d.verdict if stat != "rate" else ("higher" if d.verdict == SLOWER else "lower")
        return f"{b} is {word} than {a}: {values}"
    if d.lo is not None and (d.lo > 0 or d.hi < 0):
        why = f"the change is real but smaller than the {min_effect * 100:g} % that counts"
    else:
        why = "the interval includes no change"
    return f"No change beyond noise between {a} and {b} ({why}): {values}"


def shown(metric: str, result: Comparison, confidence: float) -> dict:
    """Every value of the answer as people read it: {"unit": the values' base unit, "a"/"b":
    {stat: {"value", "lo", "hi"}}, "diff": {stat: "+17 % (95 % interval ...)"}}."""
    out: dict = {"unit": units.base_unit(units.of_metric(metric, result.stat))}
    for name, estimates in (("a", result.a), ("b", result.b)):
        out[name] = {
            stat: None
            if e is None
            else {k: value(metric, stat, getattr(e, k)) for k in ("value", "lo", "hi")}
            for stat, e in estimates.items()
        }
    out["diff"] = {stat: None if d.rel is None else change(d, confidence) for stat, d in result.diff.items()}
    return out


def ticks(metric: str, lo: float, hi: float) -> dict:
    """Ticks for a log axis from lo to hi at 1, 2 and 5 of each power of ten, with their text
    in the metric's units: {"values": [...], "text": [...]}."""
    kind = units.of_metric(metric, "p50")
    values = [
        m * 10.0**k
        for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in (1, 2, 5)
        if lo <= m * 10.0**k <= hi
    ]
    return {"values": values, "text": [units.readable(v, kind) for v in values]}
