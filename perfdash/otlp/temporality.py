"""What each data point of an export adds, given its streams' last exports (the Collector's
`cumulativetodelta`, and a running level for delta up-down counters), for all the export's
data points at once: numpy over columns, not an object per data point.

- TO_DELTA (a cumulative counter or histogram): what it added since the stream's last export
  taken; the whole value at the stream's first export or after a reset (a new start time, a
  counter, count or bucket that went down, other buckets).
- TO_LEVEL (a delta up-down counter): the stream's running level, the sum of its deltas
  since its first export. Start times cannot tell a restart: the SDKs export nothing for an
  interval without changes, and the next delta starts where that empty interval began.
- Either way, a data point not newer than its stream's last export taken (a duplicate, or out
  of order) adds nothing.

The state of the streams sharing a state row (a metric of one resource and scope) is one
blob (`State.blobs`): their digests, a fixed-size record each (REC) and their bucket counts.
Nothing here touches the database (models.py reads and writes the rows).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from perfdash.otlp.histograms import Histogram, bucket_indices
from perfdash.otlp.translate import AS_SENT, EXPLICIT, EXPONENTIAL, NUMBER, TO_DELTA, TO_LEVEL, Points

# One stream's last export taken. `layout`: a digest of the explicit bounds, or the scale.
REC = np.dtype(
    [
        ("start", "<i8"),
        ("time", "<i8"),
        ("kind", "<i8"),
        ("value", "<f8"),  # the number (a level for TO_LEVEL), or the histogram's sum
        ("count", "<i8"),
        ("lo", "<f8"),
        ("hi", "<f8"),
        ("layout", "<i8"),
        ("zero", "<i8"),
        ("pos_offset", "<i8"),
        ("npos", "<i8"),
        ("neg_offset", "<i8"),
        ("nbuckets", "<i8"),
    ]
)
_HEAD = struct.Struct("<III")  # version, streams, bucket counts
_VERSION = 1
KEY = 16  # bytes of a stream's digest


@dataclass
class State:
    """Streams' last exports taken: stream j is `keys[j]`, in state row `rows[j]`, its record
    `rec[j]` and its bucket counts from `starts[j]` in `buckets`."""

    keys: list[bytes] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    rec: np.ndarray = field(default_factory=lambda: np.zeros(0, REC))
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of_blobs(cls, blobs: dict[bytes, bytes | None]) -> State:
        keys, rows, recs, buckets = [], [], [], []
        for row, blob in blobs.items():
            if not blob:
                continue
            version, n, nb = _HEAD.unpack_from(blob)
            if version != _VERSION:
                raise ValueError(f"OTLP stream state of version {version}")
            at = _HEAD.size
            keys += [blob[at + KEY * j : at + KEY * (j + 1)] for j in range(n)]
            rows += [row] * n
            at += KEY * n
            recs.append(blob[at : at + REC.itemsize * n])
            buckets.append(blob[at + REC.itemsize * n : at + REC.itemsize * n + 8 * nb])
        # The bytes joined, then read once: a read per row costs more than the row.
        rec = np.frombuffer(b"".join(recs), REC).copy()
        return cls(keys, rows, rec, np.frombuffer(b"".join(buckets), "<i8").copy())

    def add(self, key: bytes, row: bytes, rec: np.void | tuple, buckets: list[int]) -> None:
        """One more stream (its state from elsewhere: the table of before, models.py)."""
        self.keys.append(key)
        self.rows.append(row)
        self.rec = np.concatenate([self.rec, np.array([rec], REC)])
        self.buckets = np.concatenate([self.buckets, np.array(buckets, np.int64)])


@dataclass
class Added:
    """What each data point adds, as columns (assemble.py makes the batch of them)."""

    take: np.ndarray  # False: the point adds nothing (not newer than its stream's last export)
    # Numbers: `value` as sent, the delta, or the level. Histograms: the sum (`value`, NaN: not
    # known) and count added, their min and max where known exactly (else NaN, and `within`
    # bounds them: an interval of a cumulative histogram lies within the cumulative min and max).
    value: np.ndarray
    count: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    within_lo: np.ndarray
    within_hi: np.ndarray
    buckets: np.ndarray  # explicit histograms: the bucket counts added, one after the other
    bstart: np.ndarray  # where each point's bucket counts start (len(points) + 1)
    histograms: dict[int, Histogram]  # exponential histograms: what each adds (the columns too)


def as_sent(points: Points) -> Added:
    """Every data point adds what it says (no state)."""
    n = len(points)
    nan = np.full(n, math.nan)
    bstart = np.zeros(n + 1, np.int64)
    np.cumsum(points.array("nbuckets"), out=bstart[1:])
    kind = points.kind
    return Added(
        take=np.ones(n, bool),
        value=points.array("value").copy(),
        count=points.array("count").copy(),
        lo=points.array("lo").copy(),
        hi=points.array("hi").copy(),
        within_lo=nan,
        within_hi=nan.copy(),
        buckets=np.array(points.buckets, np.int64),
        bstart=bstart,
        histograms={i: points.histogram(i, int(bstart[i])) for i in range(n) if kind[i] == EXPONENTIAL},
    )


def _records(points: Points) -> np.ndarray:
    n = len(points)
    kind = points.array("kind")
    rec = np.zeros(n, REC)
    rec["start"] = points.array("start_ns")
    rec["time"] = points.array("time_ns")
    rec["kind"] = kind
    rec["value"] = points.array("value")
    rec["count"] = points.array("count")
    rec["lo"] = points.array("lo")
    rec["hi"] = points.array("hi")
    rec["nbuckets"] = points.array("nbuckets")
    rec["layout"] = points.array("layout")
    explicit = kind == EXPLICIT
    if explicit.any():
        rec["layout"][explicit] = np.array(points.bounds_digest, np.int64)[rec["layout"][explicit]]
    for i in np.flatnonzero(kind == EXPONENTIAL):
        rec["zero"][i], rec["pos_offset"][i], rec["npos"][i], rec["neg_offset"][i] = points.exp[i]
    return rec


def _histogram(rec: np.ndarray, buckets: np.ndarray, at: int, row: int) -> Histogram:
    """An exponential histogram's record `row` (its buckets from `at`) as a Histogram."""
    r = rec[row]
    counts = buckets[at : at + int(r["nbuckets"])].tolist()
    npos = int(r["npos"])
    total, lo, hi = (None if math.isnan(x) else float(x) for x in (r["value"], r["lo"], r["hi"]))
    return Histogram(
        int(r["count"]), total, lo, hi, scale=int(r["layout"]), zero=int(r["zero"]),
        pos_offset=int(r["pos_offset"]), pos=counts[:npos],
        neg_offset=int(r["neg_offset"]), neg=counts[npos:],
    )  # fmt: skip


def apply(points: Points, state: State, forget_before_ns: int) -> tuple[Added, dict[bytes, bytes]]:
    """What each data point adds given `state` (which must hold every stream of the points'
    state rows that has one), and the new blob of each state row the points touch. Streams
    of those rows last exported before `forget_before_ns` are left out of the new blobs."""
    added = as_sent(points)
    stateful = [i for i, m in enumerate(points.mode) if m != AS_SENT]
    if not stateful:
        return added, {}
    n, s = len(points), len(state.keys)
    rec = np.concatenate([state.rec, _records(points)])
    buckets = np.concatenate([state.buckets, added.buckets])
    bstart = np.zeros(s + n + 1, np.int64)
    np.cumsum(rec["nbuckets"], out=bstart[1:])
    index = dict(zip(state.keys, range(s), strict=True))

    # Each stream's exports in time order, each against the last one taken before it: only
    # which row that is, and the levels, need a loop (the rest is one numpy pass below).
    times, values = rec["time"].tolist(), rec["value"].tolist()
    t, mode, stream = points.time_ns, points.mode, points.stream
    latest: dict[bytes, int] = {}
    prev = np.full(n, -1, np.int64)
    skip = np.zeros(n, bool)
    levels = []
    for i in sorted(stateful, key=t.__getitem__):
        k = stream[i]
        src = latest.get(k)
        if src is None:
            src = index.get(k, -1)
        if src >= 0 and t[i] <= times[src]:
            skip[i] = True
            continue
        prev[i] = src
        if mode[i] == TO_LEVEL:
            if src >= 0:
                values[s + i] += values[src]
            levels.append(i)
        latest[k] = s + i
    if levels:
        at = np.array(levels)
        rec["value"][s + at] = added.value[at] = np.array(values)[s + at]

    kind = rec["kind"][s:]
    has = prev >= 0
    p = np.where(has, prev, 0)
    before = rec[p]
    cur = rec[s:]
    restart = (cur["start"] != 0) & (before["start"] != 0) & (cur["start"] != before["start"])
    go_on = has & ~skip & (points.array("mode") == TO_DELTA) & ~restart & (before["kind"] == kind)

    number = go_on & (kind == NUMBER) & (cur["value"] >= before["value"])
    added.value[number] -= before["value"][number]

    explicit = go_on & (kind == EXPLICIT) & (cur["layout"] == before["layout"])
    explicit &= (cur["count"] >= before["count"]) & (cur["nbuckets"] == before["nbuckets"])
    sel = np.flatnonzero(explicit)
    if len(sel):
        lengths = cur["nbuckets"][sel]
        at = bucket_indices(bstart[s + sel], lengths)
        diff = buckets[at] - buckets[bucket_indices(bstart[p[sel]], lengths)]
        ok = np.minimum.reduceat(diff, np.cumsum(lengths) - lengths) >= 0  # else a reset
        keep = np.repeat(ok, lengths)
        added.buckets[at[keep] - len(state.buckets)] = diff[keep]
        explicit[sel[~ok]] = False
        b, c = before[explicit], cur[explicit]
        added.count[explicit] = c["count"] - b["count"]
        added.value[explicit] = c["value"] - b["value"]  # NaN where either was not sent
        # The cumulative min and max hold for the interval only where they moved in it.
        moved_lo = ~np.isnan(c["lo"]) & (np.isnan(b["lo"]) | (c["lo"] < b["lo"]))
        moved_hi = ~np.isnan(c["hi"]) & (np.isnan(b["hi"]) | (c["hi"] > b["hi"]))
        added.lo[explicit] = np.where(moved_lo, c["lo"], math.nan)
        added.hi[explicit] = np.where(moved_hi, c["hi"], math.nan)
        added.within_lo[explicit], added.within_hi[explicit] = c["lo"], c["hi"]

    # Exponential histograms one by one: two exports' buckets may be at different scales.
    for i in np.flatnonzero(go_on & (kind == EXPONENTIAL)).tolist():
        delta = added.histograms[i].minus(_histogram(rec, buckets, int(bstart[p[i]]), int(p[i])))
        if delta is not None:
            added.histograms[i] = delta
            added.count[i] = delta.count
            added.value[i], added.lo[i], added.hi[i], added.within_lo[i], added.within_hi[i] = (
                math.nan if x is None else x for x in (delta.sum, delta.min, delta.max, *delta.within)
            )
    added.take = ~skip
    blobs = _blobs(points, state, stateful, index, latest, times, rec, buckets, bstart, forget_before_ns)
    return added, blobs


def _blobs(points, state, stateful, index, latest, times, rec, buckets, bstart, forget_before_ns):
    """The new blob of each state row the stateful points touch: its streams' latest records."""
    touched = {points.group[i] for i in stateful}
    members: dict[bytes, list[tuple[bytes, int]]] = {g: [] for g in touched}
    for key, row in zip(state.keys, state.rows, strict=True):
        if row in members:
            members[row].append((key, latest.get(key, index[key])))
    for i in stateful:
        key = points.stream[i]
        if key not in index and latest.get(key) is not None:
            members[points.group[i]].append((key, latest.pop(key)))  # once, though seen twice
    order, keys, sizes = [], [], []
    for g in members:
        kept = [(k, r) for k, r in members[g] if times[r] >= forget_before_ns]
        sizes.append(len(kept))
        keys += [k for k, _ in kept]
        order += [r for _, r in kept]
    rows = np.array(order, np.int64)
    out_rec = rec[rows]
    lengths = out_rec["nbuckets"]
    out_buckets = buckets[bucket_indices(bstart[rows], lengths)]
    blobs, at, bat = {}, 0, 0
    for g, size in zip(members, sizes, strict=True):
        nb = int(lengths[at : at + size].sum())
        blobs[g] = b"".join(
            [
                _HEAD.pack(_VERSION, size, nb),
                *keys[at : at + size],
                out_rec[at : at + size].tobytes(),
                out_buckets[bat : bat + nb].tobytes(),
            ]
        )
        at, bat = at + size, bat + nb
    return blobs
