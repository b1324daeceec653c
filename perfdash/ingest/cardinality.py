"""Cardinality limits at the door (docs/operations.md, "Cardinality limits").

Before a batch is accepted, the web process finds which of its series are new: those it does
not remember as existing (a bounded, least-recently-used set per process) and the store does
not have (one indexed query). A batch of existing series is never refused by these limits and
costs a dictionary lookup per series. A batch with new series is refused whole if creating
them would cross a limit:

- more than `INGEST_MAX_METRICS` metric names, or more than `INGEST_MAX_SERIES_PER_METRIC`
  series of one metric: 422, since sending it again will not help (the counts come from
  `perfdash/metrics/cardinality.py`, kept where series are created);
- more than `INGEST_NEW_SERIES_PER_MINUTE` new series from this token in this minute: 429
  with `Retry-After` (the seconds to the next minute), counted in Redis so all web processes
  share it; a single batch with more new series than that is a 422.

Values of dimension tags are not refused: past `DIMENSION_MAX_VALUES` a day they fold into
`_other` where series are created.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.http import JsonResponse

from perfdash.lib.redis import client, key
from perfdash.lib.unavailable import RETRY_AFTER_S
from perfdash.metrics import cardinality
from perfdash.metrics.batch import Batch, SeriesKey

log = logging.getLogger(__name__)
# New series per token per UTC day, for the admin's list of the biggest contributors.
DAY_TTL_S = 2 * 86400


@dataclass(frozen=True)
class Refusal:
    status: int
    body: dict
    retry_after: int | None = None

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body, status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


@dataclass
class _Known:
    """Series and metric names known to exist. Series least recently used first, at most
    INGEST_KNOWN_SERIES; metric names are few (INGEST_MAX_METRICS). Only garbage collection
    deletes series, those no batch sends any more; one forgotten here is looked up again."""

    series: OrderedDict[SeriesKey, None] = field(default_factory=OrderedDict)
    metrics: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_of(self, batch_series: list[SeriesKey]) -> list[SeriesKey]:
        with self.lock:
            unknown = []
            for s in batch_series:
                if s in self.series:
                    self.series.move_to_end(s)
                else:
                    unknown.append(s)
        if not unknown:
            return []
        found = cardinality.existing(unknown)
        self.remember(list(found))
        return [s for s in unknown if s not in found]

    def remember(self, series: list[SeriesKey]) -> None:
        with self.lock:
            for s in series:
                self.series[s] = None
            while len(self.series) > settings.INGEST_KNOWN_SERIES:
                self.series.popitem(last=False)


_known = _Known()


def forget() -> None:
    """Forget the series and metrics known to exist (tests: those of a rolled-back transaction)."""
    with _known.lock:
        _known.series.clear()
        _known.metrics.clear()


def check(token_id: int, batch: Batch, now: float) -> Refusal | None:
    """None if the batch may be accepted; else why not. Counts its new series against the
    token's minute (and day) when it passes."""
    if not (
        settings.INGEST_MAX_METRICS
        or settings.INGEST_MAX_SERIES_PER_METRIC
        or settings.INGEST_NEW_SERIES_PER_MINUTE
    ):
        return None
    # Metric names first: they need no look-up of the batch's series, often thousands.
    refused = _metric_names({s[0] for s in batch.series})
    if refused or not (settings.INGEST_MAX_SERIES_PER_METRIC or settings.INGEST_NEW_SERIES_PER_MINUTE):
        return refused
    new = _known.new_of(batch.series)
    if not new:
        return None
    refused = _series_per_metric(new) or _rate(token_id, len(new), now)
    if refused is None:
        # Counted once: the batch is accepted and its series will be made, so the batches that
        # follow it before a worker stores it must not count them again.
        _known.remember(new)
    return refused


def _metric_names(metrics: set[str]) -> Refusal | None:
    most = settings.INGEST_MAX_METRICS
    unknown = metrics - _known.metrics
    if not most or not unknown:
        return None
    counts = cardinality.series_counts(sorted(unknown))
    with _known.lock:
        _known.metrics.update(counts)
    new = sorted(unknown - counts.keys())
    if new and (total := cardinality.metric_count()) + len(new) > most:
        return _too_many(
            f"the batch brings {len(new)} new metric names (the first {new[0]!r}); "
            f"the store has {total} of at most {most}",
            "metrics",
            total,
            len(new),
            most,
            metric=new[0],
        )
    return None


def _series_per_metric(new: list[SeriesKey]) -> Refusal | None:
    most = settings.INGEST_MAX_SERIES_PER_METRIC
    if not most:
        return None
    per_metric = Counter(s[0] for s in new)
    counts = cardinality.series_counts(sorted(per_metric))
    over = [(counts.get(m, 0) + n, m) for m, n in per_metric.items() if counts.get(m, 0) + n > most]
    if not over:
        return None
    _, metric = max(over)
    has, adds = counts.get(metric, 0), per_metric[metric]
    return _too_many(
        f"metric {metric!r} has {has} series of at most {most}; the batch adds {adds}",
        "series_per_metric",
        has,
        adds,
        most,
        metric=metric,
    )


def _rate(token_id: int, new: int, now: float) -> Refusal | None:
    most = settings.INGEST_NEW_SERIES_PER_MINUTE
    if not most:
        return None
    if new > most:
        return _too_many(
            f"the batch has {new} new series; a token may add at most {most} a minute",
            "new_series_per_minute",
            0,
            new,
            most,
        )
    minute = key("new_series", token_id, int(now // 60))
    day = key("new_series_today", datetime.fromtimestamp(now, UTC).date().isoformat())
    try:
        pipe = client().pipeline()
        pipe.incrby(minute, new)
        pipe.expire(minute, 120)
        pipe.zincrby(day, new, token_id)
        pipe.expire(day, DAY_TTL_S)
        used = pipe.execute()[0]
        if used <= most:
            return None
        pipe.decrby(minute, new)
        pipe.zincrby(day, -new, token_id)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("new-series counter unavailable: %s", type(exc).__name__)
        return Refusal(503, {"error": "ingest rate limit unavailable; retry later"}, RETRY_AFTER_S)
    wait = max(1, math.ceil(60 - now % 60))
    return Refusal(
        429,
        {
            "error": f"this token added {used - new} new series this minute of at most {most}; "
            f"the batch adds {new}: retry in {wait} s",
            "limit": "new_series_per_minute",
            "count": used - new,
            "new": new,
            "max": most,
        },
        wait,
    )


def _too_many(message: str, limit: str, count: int, new: int, most: int, **where: str) -> Refusal:
    return Refusal(422, {"error": message, "limit": limit, **where, "count": count, "new": new, "max": most})


def new_series_today(now: float, top: int = 20) -> list[tuple[int, int]]:
    """(token id, new series accepted today) of the tokens that added the most, most first."""
    day = key("new_series_today", datetime.fromtimestamp(now, UTC).date().isoformat())
    return [(int(t), int(n)) for t, n in client().zrevrange(day, 0, top - 1, withscores=True) if n > 0]
