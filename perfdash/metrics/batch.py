"""A validated batch in columnar form: three numpy columns plus the list of distinct series,
not a list of dicts, so storing it costs no Python object per field of every point.

It waits in the ingest outbox in its binary form (`to_bytes`); the message form
(`to_message`, base64 in JSON) is what failed batches keep, and what workers still accept
from web processes of before the outbox.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

import numpy as np
import orjson

_HEADER_SIZE = struct.Struct("<I")

# (metric, node, agent, canonical JSON of tags)
SeriesKey = tuple[str, str, str, str]


@dataclass
class Batch:
    batch_id: str
    series: list[SeriesKey]
    series_idx: np.ndarray  # int32, index into series, one per point
    ts: np.ndarray  # float64 Unix seconds
    value: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.value)

    def to_message(self, token_id: int) -> dict:
        return {
            "v": 1,
            "token_id": token_id,
            "batch_id": self.batch_id,
            "series": [list(s) for s in self.series],
            "series_idx": _pack(self.series_idx.astype("<i4")),
            "ts": _pack(self.ts.astype("<f8")),
            "value": _pack(self.value.astype("<f8")),
        }

    def to_bytes(self) -> bytes:
        """A compact binary form, for keeping the batch in a database row: a JSON header
        (batch id, series, point count) and the three columns as they are in memory."""
        header = orjson.dumps({"batch_id": self.batch_id, "series": self.series, "points": len(self)})
        columns = [self.series_idx.astype("<i4"), self.ts.astype("<f8"), self.value.astype("<f8")]
        return b"".join([_HEADER_SIZE.pack(len(header)), header, *(c.tobytes() for c in columns)])

    @classmethod
    def from_bytes(cls, data: bytes) -> Batch:
        (size,) = _HEADER_SIZE.unpack_from(data)
        header = orjson.loads(data[_HEADER_SIZE.size : _HEADER_SIZE.size + size])
        n, at = header["points"], _HEADER_SIZE.size + size
        return cls(
            batch_id=header["batch_id"],
            series=[tuple(s) for s in header["series"]],
            series_idx=np.frombuffer(data, "<i4", n, at),
            ts=np.frombuffer(data, "<f8", n, at + 4 * n),
            value=np.frombuffer(data, "<f8", n, at + 12 * n),
        )

    @classmethod
    def from_message(cls, msg: dict) -> Batch:
        return cls(
            batch_id=msg["batch_id"],
            series=[tuple(s) for s in msg["series"]],
            series_idx=_unpack(msg["series_idx"], "<i4"),
            ts=_unpack(msg["ts"], "<f8"),
            value=_unpack(msg["value"], "<f8"),
        )


def _pack(arr: np.ndarray) -> str:
    return base64.b64encode(arr.tobytes()).decode("ascii")


def _unpack(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)
