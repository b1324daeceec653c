"""Cumulative streams' last values, so each export of a cumulative sum or histogram is stored
as what it added since the one before (the Collector's `cumulativetodelta`, kept in
PostgreSQL: it survives restarts and every web process shares it).

Conversion happens in the web process, in the transaction that also keeps the batch in the
ingest outbox: the new state and the batch commit together, so an acknowledged export has
moved the state exactly once, and an export whose transaction failed moved nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
from django.db import connection, models

from perfdash.lib.pg import binary_cursor
from perfdash.otlp.histograms import Histogram
from perfdash.otlp.translate import Point


class Stream(models.Model):
    """A cumulative stream: a digest of (token, resource, scope, metric, attributes), its start
    time and the last export taken (time and value, or histogram)."""

    key = models.BinaryField(primary_key=True)
    start_ns = models.BigIntegerField(null=True)
    time_ns = models.BigIntegerField(null=True)
    state = models.BinaryField(null=True)
    # Not indexed: every export updates every row of its streams, and an index on a column
    # that changes would make each of those updates write the primary key's index too.
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key.hex()


class CoarseMetric(models.Model):
    """A metric fed by explicit-bucket histograms: its percentiles are only as precise as the
    sender's buckets, which the read API and the pages say (`precision`)."""

    metric = models.CharField(max_length=128, primary_key=True)
    last_seen = models.DateField()

    def __str__(self) -> str:
        return self.metric


PRECISION = "as precise as the sender's buckets"
_noted: set[tuple[str, date]] = set()


def note_coarse(metrics: set[str], day: date) -> None:
    """Record that these metrics came with explicit buckets today (once per process and day)."""
    new = sorted(m for m in metrics if (m, day) not in _noted)
    if not new:
        return
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO otlp_coarsemetric (metric, last_seen) SELECT m, %s FROM unnest(%s::text[]) AS m "
            "ON CONFLICT (metric) DO UPDATE SET last_seen = excluded.last_seen",
            [day, new],
        )
    if len(_noted) > 10_000:
        _noted.clear()
    _noted.update((m, day) for m in new)


def forget() -> None:
    _noted.clear()


def precision(metric: str, since: date) -> str | None:
    """PRECISION if the metric came with explicit buckets since `since` (percentiles read over
    a window from then on mix them in); None when its percentiles are the sketch's."""
    found = CoarseMetric.objects.filter(metric=metric, last_seen__gte=since).exists()
    return PRECISION if found else None


def coarse_note(metric: str, window_s: float, now: float) -> str | None:
    """What a read of the metric's percentiles over the window must say when explicit-bucket
    histograms fell in it (None: they are the sketch's)."""
    since = datetime.fromtimestamp(now - window_s, UTC).date()
    if precision(metric, since) is None:
        return None
    return (
        f"Percentiles of {metric} are {PRECISION}: it came as OpenTelemetry histograms with "
        "explicit buckets, each bucket's count spread within its bounds (docs/otlp.md)."
    )


def forget_streams(before: datetime, chunk: int = 10_000) -> int:
    """Remove the streams not exported since `before`, a chunk per statement. A stream that
    comes back later counts from its start again: the window must outlast any sender's pause
    (it is the rollup retention, past which its earlier values are gone anyway)."""
    removed = 0
    while True:
        with connection.cursor() as cur:
            cur.execute(
                "DELETE FROM otlp_stream WHERE key IN "
                "(SELECT key FROM otlp_stream WHERE updated_at < %s LIMIT %s)",
                [before, chunk],
            )
            removed += cur.rowcount
            if cur.rowcount < chunk:
                return removed


def deltas(points: list[Point]) -> list[float | Histogram | None]:
    """For each point, what it adds: the value itself for a gauge or delta point; for a
    cumulative one, the difference to the stream's last export, the whole value at the
    stream's first export or after a reset (a new start time, or a value that went down),
    and None for an export not newer than the last one taken (a duplicate, or out of order).

    Must run inside the caller's transaction: the streams' rows stay locked until it ends."""
    out: list[float | Histogram | None] = [p.value if p.histogram is None else p.histogram for p in points]
    cumulative = sorted(
        (i for i, p in enumerate(points) if p.stream is not None),
        key=lambda i: (points[i].stream, points[i].time_ns),
    )
    if not cumulative:
        return out
    keys = sorted({points[i].stream for i in cumulative})
    # A server-side binding cursor, arrays in binary (%b): Django's cursors bind on the client,
    # quoting each element of an array in Python.
    with binary_cursor() as cur:
        state = _locked(cur, keys)
        missing = [k for k in keys if k not in state]
        if missing:
            # New streams get their rows first, in key order, so that two exports of a new
            # stream taken at once wait for each other instead of both counting from zero.
            cur.execute(
                "INSERT INTO otlp_stream (key, updated_at) SELECT k, now() FROM unnest(%b::bytea[]) AS k "
                "ORDER BY k ON CONFLICT DO NOTHING",
                [missing],
            )
            state |= _locked(cur, missing)
        changed = {}
        for i in cumulative:
            p = points[i]
            start, time, last = state[p.stream]
            current = p.value if p.histogram is None else p.histogram
            if time is not None and p.time_ns <= time:
                out[i] = None
                continue
            out[i] = (
                current
                if last is None or (p.start_ns and start and p.start_ns != start)
                else _less(current, last)
            )
            state[p.stream] = changed[p.stream] = (p.start_ns, p.time_ns, current)
        if changed:
            cur.execute(
                "UPDATE otlp_stream s SET start_ns = x.s, time_ns = x.t, state = x.v, updated_at = now() "
                "FROM unnest(%b::bytea[], %b::int8[], %b::int8[], %b::bytea[]) AS x(k, s, t, v) "
                "WHERE s.key = x.k",
                [
                    list(changed),
                    [v[0] for v in changed.values()],
                    [v[1] for v in changed.values()],
                    [_dump(v[2]) for v in changed.values()],
                ],
            )
    return out


def _locked(cur, keys: list[bytes]) -> dict[bytes, tuple]:
    """The rows of these streams that exist, locked until the transaction ends (in key
    order, as every export locks them: two exports never wait for each other in a circle)."""
    cur.execute(
        "SELECT key, start_ns, time_ns, state FROM otlp_stream WHERE key = ANY(%b::bytea[]) "
        "ORDER BY key FOR NO KEY UPDATE",
        [keys],
    )
    return {bytes(r[0]): (r[1], r[2], _load(r[3])) for r in cur.fetchall()}


def _less(current: float | Histogram, last: float | Histogram) -> float | Histogram:
    """current - last, or the whole of current when it went down (a reset)."""
    if isinstance(current, Histogram):
        if not isinstance(last, Histogram):
            return current
        return current.minus(last) or current
    if isinstance(last, Histogram) or current < last:
        return current
    return current - last


def _dump(value: float | Histogram) -> bytes:
    return orjson.dumps(value.to_state() if isinstance(value, Histogram) else {"value": value})


def _load(raw) -> float | Histogram | None:
    if raw is None:
        return None
    state = orjson.loads(bytes(raw))
    return state["value"] if "value" in state else Histogram.from_state(state)
