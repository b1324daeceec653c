"""The state of streams whose data points need the one before (cumulative counters and
histograms, delta up-down counters: temporality.py), kept in PostgreSQL: it survives
restarts and every web process shares it. One row per metric of a resource and scope holds
the last export taken of each of its streams, so an export reads and writes a row per metric,
not per stream.

Conversion happens in the web process, in the transaction that also keeps the batch in the
ingest outbox: the new state and the batch commit together, so an acknowledged export has
moved the state exactly once, and an export whose transaction failed moved nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
from django.db import connection, models

from perfdash.lib.pg import binary_cursor
from perfdash.otlp import temporality
from perfdash.otlp.temporality import REC, State
from perfdash.otlp.translate import (
    EXPLICIT,
    EXPONENTIAL,
    NUMBER,
    TO_DELTA,
    Points,
    bounds_digest,
    earliest_ns,
)


class StreamState(models.Model):
    """The streams of one metric of one resource and scope (`key`: a digest of token,
    resource, scope and metric name), each stream's last export taken (temporality.State)."""

    key = models.BinaryField(primary_key=True)
    state = models.BinaryField(null=True)
    # Not indexed: every export that moves a stream updates its row, and an index on a column
    # that changes would make each of those updates write the primary key's index too.
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key.hex()


class Stream(models.Model):
    """A cumulative stream's last export, as kept one row per stream before StreamState:
    read (never written) for a stream not yet in its StreamState row, so that an upgrade
    counts nothing twice. Forgotten like the others once not exported for the retention."""

    key = models.BinaryField(primary_key=True)
    start_ns = models.BigIntegerField(null=True)
    time_ns = models.BigIntegerField(null=True)
    state = models.BinaryField(null=True)
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
    """Remove the state rows no export has moved since `before` (an export retried or out of
    order writes nothing: its data points are no newer), a chunk per statement. A stream
    that comes back later counts from its start again: the window must outlast any sender's
    pause (it is the rollup retention, past which its earlier values are gone anyway). Streams
    of a row still exported to are left out of it on its next write (temporality.apply)."""
    removed = 0
    for table in ("otlp_streamstate", "otlp_stream"):
        while True:
            with connection.cursor() as cur:
                cur.execute(
                    f"DELETE FROM {table} WHERE key IN "
                    f"(SELECT key FROM {table} WHERE updated_at < %s LIMIT %s)",
                    [before, chunk],
                )
                removed += cur.rowcount
                if cur.rowcount < chunk:
                    break
    return removed


def added(points: Points, now: float) -> temporality.Added:
    """What each data point adds (temporality.apply), with its streams' state rows read and
    written. Must run inside the caller's transaction: the rows stay locked until it ends."""
    rows = sorted({g for g in points.group if g is not None})
    if not rows:
        return temporality.as_sent(points)
    # A server-side binding cursor, arrays in binary (%b): Django's cursors bind on the client,
    # quoting each element of an array in Python.
    with binary_cursor() as cur:
        blobs = _locked(cur, rows)
        missing = [k for k in rows if k not in blobs]
        if missing:
            # New rows first, in key order, so that two exports of a new stream taken at once
            # wait for each other instead of both counting from zero.
            cur.execute(
                "INSERT INTO otlp_streamstate (key, updated_at) SELECT k, now() "
                "FROM unnest(%b::bytea[]) AS k ORDER BY k ON CONFLICT DO NOTHING",
                [missing],
            )
            blobs |= _locked(cur, missing)
        state = State.of_blobs(blobs)
        known = set(state.keys)
        # Only cumulative streams kept a row in the older table.
        new = {
            s: g
            for s, g, m in zip(points.stream, points.group, points.mode, strict=True)
            if m == TO_DELTA and s not in known
        }
        if new:
            _earlier(cur, state, new)
        out, written = temporality.apply(points, state, earliest_ns(now))
        # A row whose blob did not change (an export retried, or out of order) is not written
        # again: its blob, and updated_at, are those of the export that last moved one of its
        # streams, which is what forgetting goes by (a new row's blob is NULL, so it differs).
        written = {k: v for k, v in written.items() if v != blobs.get(k)}
        if written:
            cur.execute(
                "UPDATE otlp_streamstate s SET state = x.v, updated_at = now() "
                "FROM unnest(%b::bytea[], %b::bytea[]) AS x(k, v) WHERE s.key = x.k",
                [list(written), list(written.values())],
            )
    return out


def _locked(cur, keys: list[bytes]) -> dict[bytes, bytes | None]:
    """The state rows that exist, locked until the transaction ends (in key order, as every
    export locks them: two exports never wait for each other in a circle)."""
    cur.execute(
        "SELECT key, state FROM otlp_streamstate WHERE key = ANY(%b::bytea[]) ORDER BY key FOR NO KEY UPDATE",
        [keys],
    )
    return {bytes(r[0]): (bytes(r[1]) if r[1] is not None else None) for r in cur.fetchall()}


def _earlier(cur, state: State, new: dict[bytes, bytes]) -> None:
    """Streams kept one row each before StreamState (otlp_stream), into `state`."""
    cur.execute(
        "SELECT key, start_ns, time_ns, state FROM otlp_stream "
        "WHERE key = ANY(%b::bytea[]) AND state IS NOT NULL",
        [list(new)],
    )
    for key, start, time, raw in cur.fetchall():
        last = orjson.loads(bytes(raw))
        rec = dict.fromkeys(REC.names, 0) | {"start": start or 0, "time": time}
        buckets = []
        if "value" in last:
            rec |= {"kind": NUMBER, "value": last["value"]}
        else:
            nan = float("nan")
            rec |= {
                "count": last["count"],
                "value": nan if last["sum"] is None else last["sum"],
                "lo": nan if last["min"] is None else last["min"],
                "hi": nan if last["max"] is None else last["max"],
            }
            if "bounds" in last:
                buckets = last["counts"]
                rec |= {"kind": EXPLICIT, "layout": bounds_digest(last["bounds"])}
            else:
                buckets = last["pos"] + last["neg"]
                rec |= {
                    "kind": EXPONENTIAL,
                    "layout": last["scale"],
                    "zero": last["zero"],
                    "pos_offset": last["pos_offset"],
                    "npos": len(last["pos"]),
                    "neg_offset": last["neg_offset"],
                }
            rec["nbuckets"] = len(buckets)
        state.add(bytes(key), new[bytes(key)], tuple(rec[n] for n in REC.names), buckets)
