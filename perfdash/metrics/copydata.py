"""PostgreSQL binary COPY streams built with numpy, so no Python loop runs per row.

Raw points are fixed-width rows; rollup rows are a fixed-width head followed by the
variable-length sketch bytea, scattered into one buffer with fancy indexing.
"""

from __future__ import annotations

import numpy as np

from perfdash.metrics.rollup import Groups, split_label
from perfdash.metrics.sketch import PAIR

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH = 946_684_800  # 2000-01-01 in Unix seconds: PostgreSQL's timestamp origin

RAW_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l_ts", ">i4"),
        ("ts", ">i8"),
        ("l_sid", ">i4"),
        ("sid", ">i4"),
        ("l_v", ">i4"),
        ("v", ">f8"),
    ]
)
ROLLUP_HEAD = np.dtype(
    [
        ("n", ">i2"),
        ("l_key", ">i4"),
        ("key", ">i4"),
        ("l_p", ">i4"),
        ("period", ">i8"),
        ("l_c", ">i4"),
        ("count", ">i8"),
        ("l_s", ">i4"),
        ("sum", ">f8"),
        ("l_lo", ">i4"),
        ("lo", ">f8"),
        ("l_hi", ">i4"),
        ("hi", ">f8"),
        ("l_sk", ">i4"),
    ]
)

RAW_COLUMNS = "(ts, series_id, value)"
ROLLUP_COLUMNS = "(key_id, {period}, count, sum, min, max, sketch)"


def pg_micros(unix_seconds: np.ndarray) -> np.ndarray:
    return np.round((unix_seconds - PG_EPOCH) * 1e6).astype(np.int64)


def raw_points(ts: np.ndarray, series_id: np.ndarray, value: np.ndarray) -> bytes:
    rows = np.empty(len(ts), RAW_ROW)
    rows["n"], rows["l_ts"], rows["l_sid"], rows["l_v"] = 3, 8, 4, 8
    rows["ts"], rows["sid"], rows["v"] = pg_micros(ts), series_id, value
    return HEADER + rows.tobytes() + TRAILER


def rollups(groups: Groups, period_seconds: int) -> bytes:
    key_id, period_no = split_label(groups.label)
    n = len(groups)
    npairs = np.diff(groups.pair_start)
    head = np.empty(n, ROLLUP_HEAD)
    head["n"] = 7
    head["l_key"], head["l_p"], head["l_c"] = 4, 8, 8
    head["l_s"], head["l_lo"], head["l_hi"] = 8, 8, 8
    head["key"], head["period"] = key_id, pg_micros(period_no * period_seconds)
    head["count"], head["sum"], head["lo"], head["hi"] = groups.count, groups.sum, groups.min, groups.max
    head["l_sk"] = npairs * PAIR.itemsize

    rowlen = ROLLUP_HEAD.itemsize + npairs * PAIR.itemsize
    starts = len(HEADER) + np.concatenate(([0], np.cumsum(rowlen)[:-1])).astype(np.int64)
    buf = np.empty(len(HEADER) + int(rowlen.sum()) + len(TRAILER), np.uint8)
    buf[: len(HEADER)] = np.frombuffer(HEADER, np.uint8)
    buf[-len(TRAILER) :] = np.frombuffer(TRAILER, np.uint8)
    buf[starts[:, None] + np.arange(ROLLUP_HEAD.itemsize)] = head.view(np.uint8).reshape(n, -1)

    p = len(groups.pair_key)
    pairs = np.empty(p, PAIR)
    pairs["key"], pairs["count"] = groups.pair_key, groups.pair_count
    owner = np.repeat(np.arange(n), npairs)
    dest = starts[owner] + ROLLUP_HEAD.itemsize + PAIR.itemsize * (np.arange(p) - groups.pair_start[owner])
    buf[dest[:, None] + np.arange(PAIR.itemsize)] = pairs.view(np.uint8).reshape(p, -1)
    return buf.tobytes()
