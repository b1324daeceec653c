"""Whole-batch validation of an ingest request body (DESIGN.md, "Ingest API v1").

Either the whole batch is valid and comes back as a columnar `Batch`, or `BadBatch` says
what is wrong and where; nothing of a rejected batch is ever stored.
"""

from __future__ import annotations

import gc
import json
import math
import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

import msgspec
import numpy as np
import orjson

from perfdash.metrics.batch import Batch, SeriesKey

METRIC_OR_TAG_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.]*\Z")
# Node, agent and tag values are free text (escaped wherever shown) but not control chars.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
NON_NEGATIVE_SUFFIXES = ("_ms", "_seconds", "_bytes", "_total")
POINT_FIELDS = frozenset(("ts", "node", "agent", "metric", "value", "tags"))
BATCH_ID_MAX = 128  # the column's size (IngestedBatch.batch_id), whatever the name limit
MAX_VALUE = 1.7e308  # anything beyond is infinite as a float

# Series seen as valid in earlier batches of this process, by how they were sent (names do
# not change validity; the limits they were checked against are part of the key).
_validated: dict[tuple[int, int], dict[tuple, tuple[SeriesKey, bool]]] = {}
_VALIDATED_MAX = 200_000


@dataclass
class Limits:
    max_points: int
    max_tags: int
    max_name: int
    max_body: int
    max_future_s: float
    max_age_s: float


class BadBatch(Exception):
    def __init__(self, message: str, status: int = 400, point: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message, self.status, self.point, self.field = message, status, point, field

    def as_json(self) -> dict:
        body: dict = {"error": self.message}
        if self.point is not None:
            body["point"] = self.point
        if self.field is not None:
            body["field"] = self.field
        return body


def decode_body(body: bytes, content_type: str, content_encoding: str, limits: Limits) -> bytes:
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise BadBatch(f"Content-Type must be application/json, not {content_type or 'missing'!r}", 415)
    encoding = content_encoding.strip().lower()
    if len(body) > limits.max_body:
        raise BadBatch(f"body is larger than {limits.max_body} bytes", 413)
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise BadBatch(f"Content-Encoding {content_encoding!r} is not supported; use gzip", 415)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        # max_length bounds the memory a gzip bomb can take.
        out = inflater.decompress(body, limits.max_body + 1)
    except zlib.error as exc:
        raise BadBatch(f"body is not valid gzip: {exc}") from exc
    if len(out) > limits.max_body or inflater.unconsumed_tail:
        raise BadBatch(f"decompressed body is larger than {limits.max_body} bytes", 413)
    if not inflater.eof:
        raise BadBatch("body is not valid gzip: truncated stream")
    return out


def parse_batch(raw: bytes, limits: Limits, now: float) -> Batch:
    # Parsing allocates ~50,000 objects per batch and creates no reference cycles; without
    # this the cyclic garbage collector runs dozens of times per batch (~30 % of the time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_batch(raw, limits, now)
    finally:
        if enabled:
            gc.enable()


class _TypedPoint(msgspec.Struct, forbid_unknown_fields=True):
    ts: float | str
    node: str
    agent: str
    metric: str
    value: float
    tags: dict[str, str] | None = None


class _TypedBody(msgspec.Struct, forbid_unknown_fields=True):
    points: list[_TypedPoint]
    batch_id: str | None = None


_TYPED = msgspec.json.Decoder(_TypedBody)


def _parse_batch(raw: bytes, limits: Limits, now: float) -> Batch:
    # Fast path: msgspec decodes and type-checks in C. Any body it refuses goes through the
    # generic path below, whose checks say precisely what and where.
    try:
        body = _TYPED.decode(raw)
    except msgspec.MsgspecError:
        body = None
    if body is not None:
        batch_id, points = _envelope(body.batch_id, body.points, limits)
        return _PointParser(limits, now).parse_typed(batch_id, points)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN, Infinity and huge integers; the stdlib parser takes them so the
        # per-point checks can say which point and field is wrong.
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadBatch(f"malformed JSON: {exc}") from exc
    if type(doc) is not dict:
        raise BadBatch("body must be a JSON object with a `points` list")
    unknown = set(doc) - {"batch_id", "points"}
    if unknown:
        raise BadBatch(f"unknown top-level field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    batch_id, points = _envelope(doc.get("batch_id"), doc.get("points"), limits)
    return _PointParser(limits, now).parse(batch_id, points)


def _envelope(batch_id, points, limits: Limits) -> tuple[str, list]:
    if batch_id is None:
        batch_id = uuid.uuid4().hex
    elif (
        type(batch_id) is not str or not 1 <= len(batch_id) <= BATCH_ID_MAX or CONTROL_CHARS.search(batch_id)
    ):
        raise BadBatch(
            f"batch_id must be a string of 1 to {BATCH_ID_MAX} printable characters", field="batch_id"
        )
    if type(points) is not list:
        raise BadBatch("`points` must be a list", field="points")
    if not points:
        raise BadBatch("`points` is empty", field="points")
    if len(points) > limits.max_points:
        raise BadBatch(f"too many points: {len(points)} > {limits.max_points} per batch", 413, field="points")
    return batch_id, points


class _PointParser:
    """Validates points. A batch repeats a few hundred series many times, so each distinct
    (metric, node, agent, tags) is checked once and later points only have their ts and
    value checked; anything unusual drops to `reject`, which finds the precise error."""

    def __init__(self, limits: Limits, now: float):
        self.limits = limits
        self.earliest = now - limits.max_age_s
        self.latest = now + limits.max_future_s
        self.metric_ok: set[str] = set()
        self.label_ok: set[str] = set()
        self.tags_seen: dict[tuple, str] = {}

    def parse(self, batch_id: str, points: list) -> Batch:
        series: dict[SeriesKey, int] = {}
        known: dict[tuple, tuple[int, bool]] = {}  # as sent -> (series index, non-negative)
        idx, ts_col, val_col = [], [], []
        earliest, latest = self.earliest, self.latest
        for i, p in enumerate(points):
            try:
                n = len(p)
                if n != 5 and (n != 6 or "tags" not in p):
                    raise TypeError
                tags = p.get("tags")
                # tags must be an object or absent: [] or "" fail on .items() and go to reject
                raw = (p["metric"], p["node"], p["agent"], () if tags is None else tuple(tags.items()))
                entry = known.get(raw)
                ts, v = p["ts"], p["value"]
            except (TypeError, KeyError, AttributeError):
                self.reject(p, i)
            if entry is None:
                entry = known[raw] = self.register(raw, i, series, p.get("tags"))
            s, non_negative = entry
            t = type(ts)
            if t is str or (t is not float and t is not int) or not earliest <= ts <= latest:
                ts = self.ts(ts, i)
            t = type(v)
            if (
                (t is not float and t is not int)
                or not -MAX_VALUE < v < MAX_VALUE
                or (non_negative and v < 0)
            ):
                v = self.value(v, raw[0], i)
            idx.append(s)
            ts_col.append(ts)
            val_col.append(v)
        return _columns(batch_id, series, idx, ts_col, val_col)

    def parse_typed(self, batch_id: str, points: list[_TypedPoint]) -> Batch:
        """The same checks as `parse`, for points msgspec has already type-checked."""
        series: dict[SeriesKey, int] = {}
        known: dict[tuple, tuple[int, bool]] = {}
        idx, ts_col, val_col = [], [], []
        earliest, latest = self.earliest, self.latest
        for i, p in enumerate(points):
            tags = p.tags
            raw = (p.metric, p.node, p.agent, () if tags is None else tuple(tags.items()))
            entry = known.get(raw)
            if entry is None:
                entry = known[raw] = self.register(raw, i, series, tags)
            s, non_negative = entry
            ts = p.ts
            if type(ts) is str or not earliest <= ts <= latest:
                ts = self.ts(ts, i)
            v = p.value
            if not -MAX_VALUE < v < MAX_VALUE or (non_negative and v < 0):
                v = self.value(v, raw[0], i)
            idx.append(s)
            ts_col.append(ts)
            val_col.append(v)
        return _columns(batch_id, series, idx, ts_col, val_col)

    def register(self, raw: tuple, i: int, series: dict[SeriesKey, int], tags) -> tuple[int, bool]:
        """Series index of a point sent as `raw` = (metric, node, agent, tag items)."""
        cache = _validated.setdefault((self.limits.max_name, self.limits.max_tags), {})
        checked = cache.get(raw)
        if checked is None:
            checked = self.check_series(raw[0], raw[1], raw[2], tags, i)
            if len(cache) >= _VALIDATED_MAX:
                cache.clear()
            cache[raw] = checked
        key, non_negative = checked
        s = series.get(key)
        if s is None:
            s = series[key] = len(series)
        return s, non_negative

    def check_series(self, metric, node, agent, tags, i: int) -> tuple[SeriesKey, bool]:
        metric = self.metric(metric, i)
        key = (metric, self.label(node, i, "node"), self.label(agent, i, "agent"), self.tags(tags, i))
        return key, metric.endswith(NON_NEGATIVE_SUFFIXES)

    def reject(self, p, i: int) -> NoReturn:
        """Raise the precise error of a point the fast path did not accept."""
        if type(p) is not dict:
            raise BadBatch("each point must be a JSON object", point=i)
        self.fields(p, i)
        self.check_series(p.get("metric"), p.get("node"), p.get("agent"), p.get("tags"), i)
        self.ts(p.get("ts"), i)
        self.value(p.get("value"), p.get("metric"), i)
        raise BadBatch("invalid point", point=i)

    def fields(self, p: dict, i: int) -> None:
        extra = sorted(set(p) - POINT_FIELDS)
        if extra:
            raise BadBatch(f"unknown field {extra[0]!r}", point=i, field=extra[0])

    def metric(self, name, i: int) -> str:
        if type(name) is str and name in self.metric_ok:
            return name
        if name is None:
            raise BadBatch("missing field", point=i, field="metric")
        self.check_key(name, i, "metric")
        self.metric_ok.add(name)
        return name

    def check_key(self, name, i: int, field: str) -> None:
        if type(name) is not str:
            raise BadBatch(f"{field} must be a string", point=i, field=field)
        if not 1 <= len(name) <= self.limits.max_name:
            raise BadBatch(f"{field} must be 1 to {self.limits.max_name} characters", point=i, field=field)
        if not METRIC_OR_TAG_KEY.match(name):
            raise BadBatch(
                f"{field} {name!r} may only use letters, digits, '_' and '.', "
                "and must not start with a digit",
                point=i,
                field=field,
            )

    def label(self, name, i: int, field: str) -> str:
        if type(name) is str and name in self.label_ok:
            return name
        if name is None:
            raise BadBatch("missing field", point=i, field=field)
        if type(name) is not str:
            raise BadBatch(f"{field} must be a string", point=i, field=field)
        if not 1 <= len(name) <= self.limits.max_name:
            raise BadBatch(f"{field} must be 1 to {self.limits.max_name} characters", point=i, field=field)
        if CONTROL_CHARS.search(name):
            raise BadBatch(f"{field} must not contain control characters", point=i, field=field)
        self.label_ok.add(name)
        return name

    def tags(self, tags, i: int) -> str:
        if not tags:
            if tags is None or type(tags) is dict:
                return "{}"
            raise BadBatch("tags must be an object of strings", point=i, field="tags")
        if type(tags) is not dict:
            raise BadBatch("tags must be an object of strings", point=i, field="tags")
        items = tuple(sorted(tags.items()))
        try:
            known = self.tags_seen.get(items)
        except TypeError:  # a list or object as a tag value; the checks below name it
            known = None
        if known is not None:
            return known
        if len(items) > self.limits.max_tags:
            raise BadBatch(f"too many tags: {len(items)} > {self.limits.max_tags}", point=i, field="tags")
        for k, v in items:
            self.check_key(k, i, f"tags.{k}")
            self.label(v, i, f"tags.{k}")
        canonical = orjson.dumps(dict(items), option=orjson.OPT_SORT_KEYS).decode()
        self.tags_seen[items] = canonical
        return canonical

    def ts(self, ts, i: int) -> float:
        t = type(ts)
        if t is str:
            try:
                parsed = datetime.fromisoformat(ts)
            except ValueError:
                raise BadBatch(f"ts {ts[:40]!r} is not an RFC 3339 timestamp", point=i, field="ts") from None
            if parsed.tzinfo is None:
                raise BadBatch("ts needs a time zone offset (e.g. 'Z')", point=i, field="ts")
            sec = parsed.timestamp()
        elif t is float or t is int:
            sec = _finite(ts)
            if sec is None:
                raise BadBatch("ts must be finite", point=i, field="ts")
        elif ts is None:
            raise BadBatch("missing field", point=i, field="ts")
        else:
            raise BadBatch("ts must be an RFC 3339 string or Unix seconds", point=i, field="ts")
        if sec > self.latest:
            raise BadBatch(
                f"ts is more than {self.limits.max_future_s:.0f} s in the future", point=i, field="ts"
            )
        if sec < self.earliest:
            raise BadBatch(
                f"ts is older than the retention of {self.limits.max_age_s / 86400:.0f} days",
                point=i,
                field="ts",
            )
        return sec

    def value(self, value, metric: str, i: int) -> float:
        t = type(value)
        if t is not float and t is not int:
            if value is None:
                raise BadBatch("missing field", point=i, field="value")
            raise BadBatch("value must be a number", point=i, field="value")
        v = _finite(value)
        if v is None:
            raise BadBatch("value must be finite", point=i, field="value")
        if v < 0 and metric.endswith(NON_NEGATIVE_SUFFIXES):
            raise BadBatch(f"{metric} cannot be negative", point=i, field="value")
        return v


def _columns(batch_id: str, series: dict[SeriesKey, int], idx: list, ts: list, values: list) -> Batch:
    return Batch(
        batch_id,
        list(series),
        np.array(idx, np.int32),
        np.array(ts, np.float64),
        np.array(values, np.float64),
    )


def _finite(number: int | float) -> float | None:
    try:
        v = float(number)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None
