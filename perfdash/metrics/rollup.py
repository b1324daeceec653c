"""Group points (or stored partial rollups) into per-(key, period) summaries, vectorised.

Pure numpy: no database. The ingest writer feeds it points, the compactor feeds it stored
rows; both get back one summary per group, ready to be written with binary COPY.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfdash.metrics.sketch import PAIR, keys_for

# How stored rollup rows are selected so that `Rows.of` can read them.
ROW_COLUMNS = (
    "{t}.key_id, extract(epoch FROM {t}.{p})::int8, {t}.count, {t}.sum, {t}.min, {t}.max, {t}.sketch"
)


def group_label(key_ids: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """One int64 label per (rollup key id, period number)."""
    return (key_ids.astype(np.int64) << 32) | periods.astype(np.int64)


def split_label(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (labels >> 32).astype(np.int32), (labels & 0xFFFFFFFF).astype(np.int64)


@dataclass
class Groups:
    label: np.ndarray  # int64, sorted unique
    count: np.ndarray  # int64
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    pair_start: np.ndarray  # int64 offsets into pair_key/pair_count, len(label) + 1
    pair_key: np.ndarray  # int32
    pair_count: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.label)


def _starts(*sorted_cols: np.ndarray) -> np.ndarray:
    change = np.zeros(len(sorted_cols[0]), dtype=bool)
    change[0] = True
    for col in sorted_cols:
        change[1:] |= col[1:] != col[:-1]
    return np.flatnonzero(change)


def combine(
    label: np.ndarray,
    count: np.ndarray,
    total: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    pair_row: np.ndarray,
    pair_key: np.ndarray,
    pair_count: np.ndarray,
) -> Groups:
    """Merge rows that share a label: counts and sums add, min/max reduce, and the
    (sketch key, count) pairs of row `pair_row` add up per key."""
    if not len(label):
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
        return Groups(
            empty_i, empty_i, empty_f, empty_f, empty_f, np.zeros(1, np.int64), np.zeros(0, np.int32), empty_i
        )
    uniq, gid = np.unique(label, return_inverse=True)
    n = len(uniq)
    lows, highs = np.full(n, np.inf), np.full(n, -np.inf)
    np.minimum.at(lows, gid, lo)
    np.maximum.at(highs, gid, hi)
    pair_gid, merged_key, merged_count = _merge_pairs(gid[pair_row], pair_key, pair_count, n)
    return Groups(
        label=uniq,
        count=np.bincount(gid, weights=count, minlength=n).astype(np.int64),
        sum=np.bincount(gid, weights=total, minlength=n),
        min=lows,
        max=highs,
        pair_start=np.searchsorted(pair_gid, np.arange(n + 1)),
        pair_key=merged_key,
        pair_count=merged_count,
    )


def _merge_pairs(pair_gid: np.ndarray, pair_key: np.ndarray, pair_count: np.ndarray, groups: int):
    """Add up counts per (group, sketch key); returns them sorted by group, then key."""
    if not len(pair_key):
        return pair_gid, pair_key, pair_count
    lo = int(pair_key.min())
    span = int(pair_key.max()) - lo + 1
    if span * groups <= min(16_000_000, 8 * len(pair_key)):
        # Keys of one metric sit within a few thousand of each other: a dense bincount is
        # linear, where sorting the pairs of a month of hourly rows is n log n and far slower.
        # But only while the pairs fill the dense array well: many groups with a few pairs
        # each (an OTLP batch's histograms, each in rows of its own) sort faster.
        totals = np.bincount(pair_gid * span + (pair_key - lo), weights=pair_count, minlength=span * groups)
        nz = np.flatnonzero(totals)
        return nz // span, (nz % span + lo).astype(np.int32), totals[nz].astype(np.int64)
    # One int64 sort key per pair: group index, then sketch key (offset to sort unsigned).
    sort_key = (pair_gid.astype(np.int64) << 32) | (pair_key.astype(np.int64) + (1 << 31))
    order = np.argsort(sort_key)
    sort_key = sort_key[order]
    starts = _starts(sort_key)
    return (
        sort_key[starts] >> 32,
        ((sort_key[starts] & 0xFFFFFFFF) - (1 << 31)).astype(np.int32),
        np.add.reduceat(pair_count[order], starts),
    )


def group_values(label: np.ndarray, values: np.ndarray) -> Groups:
    """Summaries of raw values, one per distinct label.

    The hot path of ingest: when (key, minute) fits in 31 bits, label and sketch key are
    packed into one int64 and a single argsort does all the grouping."""
    skeys = keys_for(values)
    if not len(label):
        return combine(label, label, values, values, values, label, skeys, label)
    key, minute = label >> 32, label & 0xFFFFFFFF
    m0, span = int(minute.min()), int(minute.max() - minute.min()) + 1
    if (int(key.max()) + 1) * span >= 1 << 31:
        ones = np.ones(len(values), np.int64)
        return combine(label, ones, values, values, values, np.arange(len(values)), skeys, ones)
    packed = ((key * span + (minute - m0)) << 32) | (skeys.astype(np.int64) + (1 << 31))
    order = np.argsort(packed)
    packed, values = packed[order], values[order]
    group_of = packed >> 32
    gstarts, pstarts = _starts(group_of), _starts(packed)
    g = group_of[gstarts]
    ends = np.append(gstarts[1:], len(values))
    return Groups(
        label=group_label(g // span, g % span + m0),
        count=(ends - gstarts).astype(np.int64),
        sum=np.add.reduceat(values, gstarts),
        min=np.minimum.reduceat(values, gstarts),
        max=np.maximum.reduceat(values, gstarts),
        pair_start=np.append(np.searchsorted(pstarts, gstarts), len(pstarts)),
        pair_key=((packed[pstarts] & 0xFFFFFFFF) - (1 << 31)).astype(np.int32),
        pair_count=np.diff(np.append(pstarts, len(values))).astype(np.int64),
    )


@dataclass
class Rows:
    """Stored rollup rows as columns; pairs flattened, each pointing at its row."""

    key: np.ndarray
    period: np.ndarray  # Unix seconds of the period start
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    pair_row: np.ndarray
    pair_key: np.ndarray
    pair_count: np.ndarray

    @classmethod
    def of(cls, fetched: list[tuple]) -> Rows:
        if not fetched:
            z = np.zeros(0)
            zi = np.zeros(0, np.int64)
            return cls(zi, zi, zi, z, z, z, zi, np.zeros(0, np.int32), zi)
        key, period, count, total, lo, hi, sketches = zip(*fetched, strict=True)
        pairs = np.frombuffer(b"".join(sketches), PAIR)
        sizes = np.array([len(s) for s in sketches]) // PAIR.itemsize
        return cls(
            np.array(key, np.int64),
            np.array(period, np.int64),
            np.array(count, np.int64),
            np.array(total, np.float64),
            np.array(lo, np.float64),
            np.array(hi, np.float64),
            np.repeat(np.arange(len(fetched)), sizes),
            pairs["key"].copy(),
            pairs["count"].copy(),
        )

    def where(self, mask: np.ndarray) -> Rows:
        keep_pair = mask[self.pair_row]
        new_index = np.cumsum(mask) - 1
        return Rows(
            self.key[mask],
            self.period[mask],
            self.count[mask],
            self.sum[mask],
            self.min[mask],
            self.max[mask],
            new_index[self.pair_row[keep_pair]],
            self.pair_key[keep_pair],
            self.pair_count[keep_pair],
        )

    @staticmethod
    def concat(a: Rows, b: Rows) -> Rows:
        return Rows(
            *(
                np.concatenate([x, y])
                for x, y in [
                    (a.key, b.key),
                    (a.period, b.period),
                    (a.count, b.count),
                    (a.sum, b.sum),
                    (a.min, b.min),
                    (a.max, b.max),
                    (a.pair_row, b.pair_row + len(a.key)),
                    (a.pair_key, b.pair_key),
                    (a.pair_count, b.pair_count),
                ]
            )
        )

    def grouped(self, period_seconds: int) -> Groups:
        label = group_label(self.key, self.period // period_seconds)
        return combine(
            label, self.count, self.sum, self.min, self.max, self.pair_row, self.pair_key, self.pair_count
        )
