"""A validated batch in columnar form: three numpy columns plus the list of distinct series,
not a list of dicts, so storing it costs no Python object per field of every point.

A batch may also carry pre-aggregated entries (`Aggregates`): one summary per series and
time (count, sum, min, max and sketch bins), as an OTLP histogram brings, stored through the
same rollups without one point per recorded value.

It waits in the ingest outbox in its binary form (`to_bytes`); the message form
(`to_message`, base64 in JSON) is what failed batches keep, and what workers still accept
from web processes of before the outbox.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import orjson

_HEADER_SIZE = struct.Struct("<I")

# (metric, node, agent, canonical JSON of tags)
SeriesKey = tuple[str, str, str, str]


# The columns of Aggregates: name, dtype, and their length (entries, entries + 1, or pairs).
_AGG_COLUMNS = [
    ("series_idx", "<i4", "m"),
    ("ts", "<f8", "m"),
    ("count", "<i8", "m"),
    ("sum", "<f8", "m"),
    ("min", "<f8", "m"),
    ("max", "<f8", "m"),
    ("pair_start", "<i8", "m+1"),
    ("pair_key", "<i4", "p"),
    ("pair_count", "<i8", "p"),
]


@dataclass
class Aggregates:
    """Pre-aggregated entries: each a summary of values recorded for one series up to `ts`,
    with exact count, sum, min and max, and its histogram as (sketch key, count) pairs whose
    counts add up to `count`. Entry i's pairs are pair_key/pair_count[pair_start[i]:pair_start[i + 1]]."""

    series_idx: np.ndarray  # int32
    ts: np.ndarray  # float64 Unix seconds
    count: np.ndarray  # int64
    sum: np.ndarray  # float64
    min: np.ndarray  # float64
    max: np.ndarray  # float64
    pair_start: np.ndarray  # int64, one more than entries
    pair_key: np.ndarray  # int32
    pair_count: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.count)

    def columns(self) -> list[np.ndarray]:
        return [getattr(self, name).astype(dtype) for name, dtype, _ in _AGG_COLUMNS]


@dataclass
class Batch:
    batch_id: str
    series: list[SeriesKey]
    series_idx: np.ndarray  # int32, index into series, one per point
    ts: np.ndarray  # float64 Unix seconds
    value: np.ndarray  # float64
    aggregates: Aggregates | None = None

    @classmethod
    def of_lists(
        cls,
        batch_id: str,
        series: Iterable[SeriesKey],
        idx: list,
        ts: list,
        values: list,
        aggregates: Aggregates | None = None,
    ) -> Batch:
        """From the Python lists a parser fills point by point (`series` in index order)."""
        return cls(
            batch_id,
            list(series),
            np.array(idx, np.int32),
            np.array(ts, np.float64),
            np.array(values, np.float64),
            aggregates,
        )

    def __len__(self) -> int:
        """Data points: plain points and pre-aggregated entries."""
        return len(self.value) + (len(self.aggregates) if self.aggregates is not None else 0)

    def recorded(self) -> int:
        """Values recorded: each plain point is one, each entry its count."""
        return len(self.value) + (int(self.aggregates.count.sum()) if self.aggregates is not None else 0)

    def to_message(self, token_id: int) -> dict:
        message = {
            "v": 1,
            "token_id": token_id,
            "batch_id": self.batch_id,
            "series": [list(s) for s in self.series],
            "series_idx": _pack(self.series_idx.astype("<i4")),
            "ts": _pack(self.ts.astype("<f8")),
            "value": _pack(self.value.astype("<f8")),
        }
        if self.aggregates is not None:
            agg = self.aggregates
            message["aggregates"] = {
                name: _pack(col) for (name, _, _), col in zip(_AGG_COLUMNS, agg.columns(), strict=True)
            }
        return message

    def to_bytes(self) -> bytes:
        """A compact binary form, for keeping the batch in a database row: a JSON header
        (batch id, series, point count, and entry and pair counts if there are aggregates)
        and the columns as they are in memory."""
        head = {"batch_id": self.batch_id, "series": self.series, "points": len(self.value)}
        columns = [self.series_idx.astype("<i4"), self.ts.astype("<f8"), self.value.astype("<f8")]
        if self.aggregates is not None:
            head["aggregates"], head["pairs"] = len(self.aggregates), len(self.aggregates.pair_key)
            columns += self.aggregates.columns()
        header = orjson.dumps(head)
        return b"".join([_HEADER_SIZE.pack(len(header)), header, *(c.tobytes() for c in columns)])

    @classmethod
    def from_bytes(cls, data: bytes) -> Batch:
        (size,) = _HEADER_SIZE.unpack_from(data)
        header = orjson.loads(data[_HEADER_SIZE.size : _HEADER_SIZE.size + size])
        n, at = header["points"], _HEADER_SIZE.size + size
        aggregates = None
        if "aggregates" in header:
            m, p, cols = header["aggregates"], header["pairs"], {}
            lengths = {"m": m, "m+1": m + 1, "p": p}
            at_agg = at + 20 * n
            for name, dtype, length in _AGG_COLUMNS:
                cols[name] = np.frombuffer(data, dtype, lengths[length], at_agg)
                at_agg += cols[name].nbytes
            aggregates = Aggregates(**cols)
        return cls(
            batch_id=header["batch_id"],
            series=[tuple(s) for s in header["series"]],
            series_idx=np.frombuffer(data, "<i4", n, at),
            ts=np.frombuffer(data, "<f8", n, at + 4 * n),
            value=np.frombuffer(data, "<f8", n, at + 12 * n),
            aggregates=aggregates,
        )

    @classmethod
    def from_message(cls, msg: dict) -> Batch:
        aggregates = None
        if "aggregates" in msg:
            agg = msg["aggregates"]
            aggregates = Aggregates(**{name: _unpack(agg[name], dtype) for name, dtype, _ in _AGG_COLUMNS})
        return cls(
            batch_id=msg["batch_id"],
            series=[tuple(s) for s in msg["series"]],
            series_idx=_unpack(msg["series_idx"], "<i4"),
            ts=_unpack(msg["ts"], "<f8"),
            value=_unpack(msg["value"], "<f8"),
            aggregates=aggregates,
        )


def _pack(arr: np.ndarray) -> str:
    return base64.b64encode(arr.tobytes()).decode("ascii")


def _unpack(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)
