"""Whole-batch validation of an ingest request body (docs/ingest-api.md).

Either the whole batch is valid and comes back as a columnar `Batch`, or `ProtocolError` says
what is wrong and where; nothing of a rejected batch is ever stored. The rules, limits and
messages are the protocol's (collectors/protocol.py, shared with the node collector); this
module only makes them fast, checking each distinct series once.
"""

from __future__ import annotations

import gc
import uuid
from typing import NoReturn

import msgspec
import orjson

from collectors import protocol
from collectors.protocol import MAX_VALUE, NON_NEGATIVE_SUFFIXES, Limits, ProtocolError, decode_body
from perfdash.metrics.batch import Batch, SeriesKey

__all__ = ["Limits", "ProtocolError", "decode_body", "parse_batch"]

# Series seen as valid in earlier batches of this process, by how they were sent (names do
# not change validity; the limits they were checked against are part of the key).
_validated: dict[tuple[int, int], dict[tuple, tuple[SeriesKey, bool]]] = {}
_VALIDATED_MAX = 200_000


def parse_batch(raw: bytes, limits: Limits, now: float) -> Batch:
    # Parsing allocates tens of thousands of objects per batch and creates no reference cycles;
    # without this the cyclic garbage collector runs over and over per batch, freeing nothing.
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
    except (msgspec.MsgspecError, UnicodeDecodeError):  # msgspec's error for bytes not UTF-8
        body = None
    if body is not None:
        batch_id, points = _envelope(body.batch_id, body.points, limits)
        return _PointParser(limits, now).parse_typed(batch_id, points)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses NaN, Infinity, huge integers and text that is not valid Unicode;
        # the protocol's parser takes them so the point checks can say where they are.
        doc = protocol.loads(raw)
    batch_id, points = protocol.check_body(doc, limits)
    return _PointParser(limits, now).parse(batch_id or uuid.uuid4().hex, points)


def _envelope(batch_id, points, limits: Limits) -> tuple[str, list]:
    batch_id, points = protocol.check_envelope(batch_id, points, limits)
    return batch_id or uuid.uuid4().hex, points


class _PointParser:
    """Validates points. A batch repeats a few hundred series many times, so each distinct
    (metric, node, agent, tags) is checked once and later points only have their ts and
    value checked; anything unusual drops to `reject`, which finds the precise error."""

    def __init__(self, limits: Limits, now: float):
        self.limits = limits
        self.now = now
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
        return Batch.of_lists(batch_id, series, idx, ts_col, val_col)

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
        return Batch.of_lists(batch_id, series, idx, ts_col, val_col)

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
        try:
            metric = self.metric(metric)
            key = (metric, self.label(node, "node"), self.label(agent, "agent"), self.tags(tags))
        except ProtocolError as exc:
            raise exc.at(i) from None
        return key, metric.endswith(NON_NEGATIVE_SUFFIXES)

    def reject(self, p, i: int) -> NoReturn:
        """Raise the precise error of a point the fast path did not accept."""
        try:
            protocol.check_point(p, self.now, self.limits)
        except ProtocolError as exc:
            raise exc.at(i) from None
        raise ProtocolError("invalid point", point=i)

    def metric(self, name) -> str:
        if type(name) is str and name in self.metric_ok:
            return name
        self.metric_ok.add(protocol.check_name(name, "metric", self.limits.max_name))
        return name

    def label(self, name, field: str) -> str:
        if type(name) is str and name in self.label_ok:
            return name
        self.label_ok.add(protocol.check_label(name, field, self.limits.max_name))
        return name

    def tags(self, tags) -> str:
        if type(tags) is dict and tags:
            try:
                known = self.tags_seen.get(tuple(sorted(tags.items())))
            except TypeError:  # a list or object as a tag value; the checks below name it
                known = None
            if known is not None:
                return known
        items = protocol.check_tags(tags, self.limits)
        canonical = orjson.dumps(dict(items), option=orjson.OPT_SORT_KEYS).decode()
        self.tags_seen[items] = canonical
        return canonical

    def ts(self, ts, i: int) -> float:
        try:
            return protocol.parse_ts(ts, self.now, self.limits)
        except ProtocolError as exc:
            raise exc.at(i) from None

    def value(self, value, metric: str, i: int) -> float:
        try:
            return protocol.check_value(value, metric)
        except ProtocolError as exc:
            raise exc.at(i) from None
