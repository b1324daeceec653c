"""Deploy verification: did a deploy make the fleet slower?

A deploy event tagged with a `version` is checked once `DEPLOY_VERIFY_AFTER` has passed: on
each of `DEPLOY_VERIFY_METRICS`, the new version's p95 (a counter's rate) is compared with the
previous version's (compare.py). Given the deploy's time and tags, this module decides the
cohorts, compares them and returns the answer; perfdash/alerts/deploys.py finds the deploys
that are due and the earlier deploy events, and stores the answer with the event.

- **The previous version** is the version of the latest earlier deploy with another version
  (as the caller found it), else the other version with the most points in the hour before
  the deploy. With neither, or when the points carry no version tag (none of the new
  version's arrive after the deploy), the fleet before the deploy is compared with the fleet
  after it.
- **Canary**: the previous version still reports in the second half of the range after the
  deploy, so both versions are compared over that same range, [deploy, deploy + AFTER).
- **Before/after**: the previous version over AFTER before the deploy against the new one
  over AFTER after it. The minute of the deploy, half before and half after, is in neither.
- A deploy tagged with a node is compared on that node only.

A deploy that was not verified when it was due (the workers were down) can still be verified
as long as the minute rollups hold the range before it (`MINUTE_ROLLUP_RETENTION_DAYS`,
`verifiable_since`): whole hour rows would blur the half hour before a deploy into the half
hour after it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError

from perfdash.compare import words
from perfdash.compare.cohorts import Cohort, compare_cohorts, stats_for
from perfdash.compare.compare import FASTER, INSUFFICIENT, NO_CHANGE, SLOWER, Options
from perfdash.lib.durations import DAY_S, HOUR_S, parse_duration
from perfdash.metrics import query
from perfdash.metrics.cardinality import OTHER
from perfdash.metrics.dimensions import dimension_tags
from perfdash.metrics.scope import Scope, UnknownMetric

log = logging.getLogger(__name__)

CANARY, BEFORE_AFTER = "canary", "before/after"
# A metric whose comparison raised: recorded as such, so that the other metrics' answers are kept.
ERROR = "error"
# Worst first: the deploy's verdict is the worst of its metrics' that could be compared.
VERDICT_ORDER = (SLOWER, NO_CHANGE, FASTER)
# Points reach the store seconds after they are measured: a range is read a minute after it ends.
LATE_S = 60
TAG = "version"


def after_s() -> int:
    """DEPLOY_VERIFY_AFTER in seconds, rounded up to whole minutes (rollups are per minute)."""
    return math.ceil(parse_duration(settings.DEPLOY_VERIFY_AFTER) / 60) * 60


def due_until(now: float) -> float:
    """The latest deploy time (Unix seconds) whose range after it is over at `now`, late
    points included: that range starts on the minute after the deploy, up to 60 s later."""
    return now - after_s() - 60 - LATE_S


def verifiable_since(now: float) -> float:
    """The earliest deploy time whose range before it the minute rollups still hold at `now`
    (the comparison reads minute rows from there on, cohorts.plan)."""
    return now - settings.MINUTE_ROLLUP_RETENTION_DAYS * DAY_S + HOUR_S + after_s() + 60


@dataclass(frozen=True)
class Design:
    """What is compared with what."""

    how: str  # CANARY or BEFORE_AFTER
    against: str | None  # the previous version; None: the fleet (or node) before the deploy
    a: Cohort
    b: Cohort
    notes: list[str] = field(default_factory=list)


def design(ts: float, tags: dict, previous_deploy: str | None = None) -> Design:
    """The cohorts for a deploy at `ts` (Unix seconds) with these tags; `previous_deploy` is
    the version of the latest earlier deploy with another version, if there is one."""
    version, node = tags[TAG], tags.get("node", "")
    span = after_s()
    start = math.ceil(ts / 60) * 60
    after = (start, start + span)
    before = (math.floor(ts / 60) * 60 - span, math.floor(ts / 60) * 60)
    fleet = Scope(node=node)

    def untagged(note: str) -> Design:
        return Design(BEFORE_AFTER, None, Cohort(fleet, *before), Cohort(fleet, *after), [note])

    if TAG not in dimension_tags():
        return untagged(f"{TAG} is not one of DIMENSION_TAGS: points cannot be told apart by version.")
    if not _versions(node, *after).get(version):
        return untagged(f"No point tagged {TAG}={version} arrived after the deploy.")
    previous = previous_deploy
    if previous is None:
        counts = _versions(node, before[1] - HOUR_S, before[1])
        for not_it in (version, OTHER):  # the folded values are no version of their own
            counts.pop(not_it, None)
        previous = max(sorted(counts), key=counts.get, default=None)
    if previous is None:
        return untagged("No previous version was found, neither by an earlier deploy nor in the points.")
    old, new = (Scope(node=node, tag_key=TAG, tag_value=v) for v in (previous, version))
    second_half = (after[0] + span // 120 * 60, after[1])
    if _versions(node, *second_half).get(previous):
        return Design(CANARY, previous, Cohort(old, *after), Cohort(new, *after))
    return Design(BEFORE_AFTER, previous, Cohort(old, *before), Cohort(new, *after))


def _versions(node: str, start: int, end: int) -> dict[str, int]:
    """Points per version over [start, end) (on a node, if given), of the verified metrics."""
    counts: dict[str, int] = {}
    for metric in settings.DEPLOY_VERIFY_METRICS:
        # A window read at `end - 60` ends at `end` (its last minute "still running").
        rows = query.breakdown(metric, end - start, TAG, Scope(node=node), now=end - 60, percentiles=False)
        for value, stats in rows.items():
            counts[value] = counts.get(value, 0) + stats["count"]
    return counts


def verify(ts: float, tags: dict, now: float, previous_deploy: str | None = None) -> dict:
    """The verification of a deploy at `ts` with these tags, as stored with its event:

    {"version", "against" (None: the fleet before the deploy), "how" ("canary" or
    "before/after"), "node" ("" for the fleet), "a" and "b" (the previous and the new cohort:
    {"label", "version", "node", "from", "to"}), "metrics": {metric: {"verdict", "stat",
    "rel", "lo", "hi", "a", "b", "a_count", "b_count", "summary", "change" (the values and the
    change in short, for a marker's hover)}}, "verdict", "confidence",
    "min_effect", "notes", "checked_at"}.

    Raises only for the database: a metric whose comparison fails otherwise is recorded as
    "error" and the others are kept."""
    d = design(ts, tags, previous_deploy)
    labels = words.labels(d.a, d.b)
    metrics = {metric: _compared(metric, d, labels, now) for metric in settings.DEPLOY_VERIFY_METRICS}
    found = {m["verdict"] for m in metrics.values()}
    options = Options()
    return {
        "version": tags[TAG],
        "against": d.against,
        "how": d.how,
        "node": tags.get("node", ""),
        "a": _cohort_json(d.a, labels[0]),
        "b": _cohort_json(d.b, labels[1]),
        "metrics": metrics,
        "verdict": next((v for v in VERDICT_ORDER if v in found), INSUFFICIENT),
        "confidence": options.confidence,
        "min_effect": options.min_effect,
        "notes": d.notes,
        "checked_at": _iso(now),
    }


def _compared(metric: str, d: Design, labels: tuple[str, str], now: float) -> dict:
    stats = stats_for(metric)
    stat = "p95" if "p95" in stats else stats[0]
    options = Options(stats=(stat,), stat=stat, min_count=settings.COMPARE_MIN_COUNT)

    def found(verdict: str, summary: str, **values) -> dict:
        nothing = dict.fromkeys(("rel", "lo", "hi", "a", "b", "change"))
        return {
            "verdict": verdict,
            "stat": stat,
            **nothing,
            "a_count": 0,
            "b_count": 0,
            **values,
            "summary": summary,
        }

    try:
        result = compare_cohorts(metric, d.a, d.b, options, now)
    except UnknownMetric:
        return found(INSUFFICIENT, f"No point of {metric} has been stored.")
    except DatabaseError:
        raise  # the database, not this metric: the whole verification is tried again later
    except Exception as exc:
        log.exception("deploy verification of %s failed", metric)
        return found(ERROR, f"The comparison failed ({type(exc).__name__}).")
    diff = result.diff[stat]
    a, b = (e.value if e else None for e in (result.a[stat], result.b[stat]))
    return found(
        diff.verdict,
        words.sentence(metric, result, *labels, options.confidence, options.min_effect),
        rel=_round(diff.rel, 4),
        lo=_round(diff.lo, 4),
        hi=_round(diff.hi, 4),
        a=_round(a, 6, significant=True),
        b=_round(b, 6, significant=True),
        a_count=result.a_count,
        b_count=result.b_count,
        change=f"{stat} {words.value(metric, stat, b)} vs {words.value(metric, stat, a)}, "
        + words.change(diff, options.confidence),
    )


def _cohort_json(c: Cohort, label: str) -> dict:
    return {
        "label": label,
        "version": c.scope.tag_value or None,
        "node": c.scope.node,
        "from": _iso(c.start),
        "to": _iso(c.end),
    }


def _round(x: float | None, digits: int, significant: bool = False) -> float | None:
    if x is None:
        return None
    return float(f"{x:.{digits}g}") if significant else round(x, digits)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
