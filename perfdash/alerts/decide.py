"""The alert state machine, as a pure function: no database, no clock of its own.

    inactive ──breach──► pending ──breach for `for_seconds`──► firing ──recovered──► inactive
        ▲                   │ no breach                          │   (event "resolved")
        └───────────────────┘                                    └── every `repeat_seconds`: "repeat"

A firing alert never announced (it started firing during a silence) is announced as a
"repeat" at the first evaluation that may notify: the engine holds it back while silenced.

"Breach" compares with the threshold; "recovered" with the recovery threshold (hysteresis).
Fewer than `min_samples` points decide nothing; no data at all does what `no_data` says.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime

COMPARE = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


@dataclass(frozen=True)
class Spec:
    comparison: str
    threshold: float
    recovery: float
    for_seconds: int = 0
    min_samples: int = 1
    no_data: str = "keep"  # keep, alert or resolve
    repeat_seconds: int | None = None
    send_resolved: bool = True


@dataclass(frozen=True)
class Observation:
    value: float | None
    count: int


@dataclass(frozen=True)
class Current:
    state: str  # inactive, pending or firing
    since: datetime
    last_notified: datetime | None = None


@dataclass(frozen=True)
class Decision:
    state: str
    event: str | None = None  # pending, firing, resolved, inactive, repeat; None: nothing happened
    notify: bool = False


def decide(spec: Spec, current: Current, seen: Observation, now: datetime) -> Decision:
    verdict = _verdict(spec, seen)  # "breach", "recovered", "ok" (neither) or None (decide nothing)
    state = current.state
    if state == "inactive":
        if verdict == "breach":
            return (
                Decision("firing", "firing", True)
                if spec.for_seconds == 0
                else Decision("pending", "pending")
            )
        return Decision("inactive")
    if state == "pending":
        if verdict == "breach":
            if (now - current.since).total_seconds() >= spec.for_seconds:
                return Decision("firing", "firing", True)
            return Decision("pending")
        if verdict in ("recovered", "ok"):
            return Decision("inactive", "inactive")
        return Decision("pending")
    # firing
    if verdict == "recovered":
        return Decision("inactive", "resolved", spec.send_resolved)
    last = current.last_notified
    if last is None:
        return Decision("firing", "repeat", True)
    if spec.repeat_seconds and (now - last).total_seconds() >= spec.repeat_seconds:
        return Decision("firing", "repeat", True)
    return Decision("firing")


def _verdict(spec: Spec, seen: Observation) -> str | None:
    if seen.value is None or seen.count == 0:
        return {"alert": "breach", "resolve": "recovered"}.get(spec.no_data)
    if seen.count < spec.min_samples:
        return None
    compare = COMPARE[spec.comparison]
    if compare(seen.value, spec.threshold):
        return "breach"
    if compare(seen.value, spec.recovery):
        return "ok"  # between the two thresholds: not breaching, not yet recovered
    return "recovered"
