"""Ingest API v1, the protocol: what a valid body, batch and point are, in one place.

The server's validation (perfdash/ingest/validate.py) and the node collector take their rules,
limits and error messages from here, so a point the collector forwards is one the server
stores. Only the standard library: the collectors never import the server; of the collectors
the server imports only this and `collectors/event.py` (the same for events).

Every check raises `ProtocolError`, whose `as_json()` is the API's error body; the point's
index is attached by whoever knows it (`check_points`, or the server's own loop).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from datetime import datetime

INGEST_PATH = "/api/v1/ingest"

# The well-known metrics: the dashboard's panels and the SDK's helpers are built on them.
AGENT_RESPONSE_MS = "agent_response_ms"
TOOL_EXECUTION_MS = "tool_execution_ms"
LLM_CALL_MS = "llm_call_ms"
MEMORY_OP_MS = "memory_op_ms"
AGENT_MEMORY_BYTES = "agent_memory_bytes"
ACTIVE_AGENTS = "active_agents"
ERRORS_TOTAL = "errors_total"
TOKENS_TOTAL = "tokens_total"
CACHE_HITS_TOTAL = "cache_hits_total"
CACHE_MISSES_TOTAL = "cache_misses_total"
WELL_KNOWN_METRICS = {
    AGENT_RESPONSE_MS: "latency",
    TOOL_EXECUTION_MS: "latency",
    LLM_CALL_MS: "latency",
    MEMORY_OP_MS: "latency",
    AGENT_MEMORY_BYTES: "gauge",
    ACTIVE_AGENTS: "gauge",
    ERRORS_TOTAL: "counter",
    TOKENS_TOTAL: "counter",
    CACHE_HITS_TOTAL: "counter",
    CACHE_MISSES_TOTAL: "counter",
}

# What a metric's name says about its values: `_ms` is a latency, `_total` a counter (each
# point a number of events), and durations, sizes and counts are never negative.
LATENCY_SUFFIX = "_ms"
COUNTER_SUFFIX = "_total"
NON_NEGATIVE_SUFFIXES = (LATENCY_SUFFIX, "_seconds", "_bytes", COUNTER_SUFFIX)

BODY_FIELDS = frozenset(("batch_id", "points"))
POINT_FIELDS = frozenset(("ts", "node", "agent", "metric", "value", "tags"))
# Metric names and tag keys. Node, agent and tag values are free text (escaped wherever
# shown) but not control characters.
NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.]*\Z")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# A string holds a surrogate only when its JSON did: an unpaired escape such as \ud800, or
# bytes that are not UTF-8 (`loads` turns those into surrogates). Neither can be stored.
SURROGATES = re.compile("[\ud800-\udfff]")
BATCH_ID_MAX = 128  # the column's size (IngestedBatch.batch_id), whatever the name limit
MAX_VALUE = 1.7e308  # anything beyond is infinite as a float

# (ts, metric, value, tags or None, node, agent): a checked point, as the SDK buffers it.
Point = tuple[float, str, float, "dict[str, str] | None", str, str]


@dataclass(frozen=True)
class Limits:
    """The server's limits; the defaults are its default settings (INGEST_MAX_POINTS,
    INGEST_MAX_TAGS, INGEST_MAX_NAME_LENGTH, INGEST_MAX_BODY_BYTES, INGEST_MAX_FUTURE_SECONDS
    and ROLLUP_RETENTION_DAYS)."""

    max_points: int = 10_000
    max_tags: int = 16
    max_name: int = 128
    max_body: int = 10 * 1024 * 1024
    max_future_s: float = 600.0
    max_age_s: float = 90 * 86400.0


DEFAULT_LIMITS = Limits()


class ProtocolError(Exception):
    """What is wrong with a body and where: the HTTP status to answer, the index of the point
    in `points` and the field (`tags.<key>` for a tag)."""

    def __init__(self, message: str, status: int = 400, point: int | None = None, field: str | None = None):
        # Both may quote what the client sent, which may not be valid Unicode; the answer must be.
        message = printable(message)
        super().__init__(message)
        self.message, self.status, self.point = message, status, point
        self.field = None if field is None else printable(field)

    def at(self, point: int) -> ProtocolError:
        self.point = point
        return self

    def as_json(self) -> dict:
        body: dict = {"error": self.message}
        if self.point is not None:
            body["point"] = self.point
        if self.field is not None:
            body["field"] = self.field
        return body


def printable(text: str) -> str:
    """`text` with any surrogate written as its escape (\\ud800), so it can be encoded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# --- bodies ----------------------------------------------------------------------------------


def decode_body(body: bytes, content_type: str, content_encoding: str, limits: Limits) -> bytes:
    """The JSON text of a request body: plain or gzip, at most `limits.max_body` bytes either way."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ProtocolError(f"Content-Type must be application/json, not {content_type or 'missing'!r}", 415)
    encoding = content_encoding.strip().lower()
    if len(body) > limits.max_body:
        raise ProtocolError(f"body is larger than {limits.max_body} bytes", 413)
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise ProtocolError(f"Content-Encoding {content_encoding!r} is not supported; use gzip", 415)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        # max_length bounds the memory a gzip bomb can take.
        out = inflater.decompress(body, limits.max_body + 1)
    except zlib.error as exc:
        raise ProtocolError(f"body is not valid gzip: {exc}") from exc
    if len(out) > limits.max_body or inflater.unconsumed_tail:
        raise ProtocolError(f"decompressed body is larger than {limits.max_body} bytes", 413)
    if not inflater.eof:
        raise ProtocolError("body is not valid gzip: truncated stream")
    return out


def loads(raw: bytes) -> object:
    """The JSON document of a body, or ProtocolError. The standard library's parser takes NaN,
    Infinity and huge integers, which the faster parsers refuse, so that the point checks can
    say which point and field is wrong; bytes that are not UTF-8 become surrogates for the
    same reason. The text's encoding is detected as `json.loads` does for bytes."""
    try:
        return json.loads(raw.decode(json.detect_encoding(raw), "surrogateescape"))
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None


def check_body(doc: object, limits: Limits) -> tuple[str | None, list]:
    """The batch id (None when not given) and the unchecked points of a parsed body."""
    if type(doc) is not dict:
        raise ProtocolError("body must be a JSON object with a `points` list")
    unknown = sorted(set(doc) - BODY_FIELDS)
    if unknown:
        raise ProtocolError(f"unknown top-level field {unknown[0]!r}", field=unknown[0])
    return check_envelope(doc.get("batch_id"), doc.get("points"), limits)


def check_envelope(batch_id: object, points: object, limits: Limits) -> tuple[str | None, list]:
    batch_id = check_batch_id(batch_id)
    if type(points) is not list:
        raise ProtocolError("`points` must be a list", field="points")
    if not points:
        raise ProtocolError("`points` is empty", field="points")
    if len(points) > limits.max_points:
        raise ProtocolError(
            f"too many points: {len(points)} > {limits.max_points} per batch", 413, field="points"
        )
    return batch_id, points


def check_batch_id(batch_id: object) -> str | None:
    if batch_id is None:
        return None
    if (
        type(batch_id) is not str
        or not 1 <= len(batch_id) <= BATCH_ID_MAX
        or CONTROL_CHARS.search(batch_id)
        or SURROGATES.search(batch_id)
    ):
        raise ProtocolError(
            f"batch_id must be a string of 1 to {BATCH_ID_MAX} printable characters", field="batch_id"
        )
    return batch_id


# --- points ----------------------------------------------------------------------------------


def check_points(points: list, now: float, limits: Limits) -> list[Point]:
    result = []
    for i, p in enumerate(points):
        try:
            result.append(check_point(p, now, limits))
        except ProtocolError as exc:
            raise exc.at(i) from None
    return result


def check_point(p: object, now: float, limits: Limits) -> Point:
    """One point of a parsed body, checked (without its index: see `check_points`)."""
    if type(p) is not dict:
        raise ProtocolError("each point must be a JSON object")
    unknown = sorted(set(p) - POINT_FIELDS)
    if unknown:
        raise ProtocolError(f"unknown field {unknown[0]!r}", field=unknown[0])
    return check_fields(
        p.get("metric"),
        p.get("node"),
        p.get("agent"),
        p.get("tags"),
        p.get("ts"),
        p.get("value"),
        now,
        limits,
    )


def check_fields(
    metric: object,
    node: object,
    agent: object,
    tags: object,
    ts: object,
    value: object,
    now: float,
    limits: Limits,
) -> Point:
    """A point's fields, checked in the order the server reports them (None is missing)."""
    check_name(metric, "metric", limits.max_name)
    check_label(node, "node", limits.max_name)
    check_label(agent, "agent", limits.max_name)
    check_tags(tags, limits)
    return (parse_ts(ts, now, limits), metric, check_value(value, metric), tags or None, node, agent)


def _text(name: object, field: str, max_name: int) -> str:
    if name is None:
        raise ProtocolError("missing field", field=field)
    if type(name) is not str:
        raise ProtocolError(f"{field} must be a string", field=field)
    if not 1 <= len(name) <= max_name:
        raise ProtocolError(f"{field} must be 1 to {max_name} characters", field=field)
    return name


def check_name(name: object, field: str, max_name: int) -> str:
    """A metric name or a tag key."""
    name = _text(name, field, max_name)
    if not NAME.match(name):
        raise ProtocolError(
            f"{field} {name!r} may only use letters, digits, '_' and '.', and must not start with a digit",
            field=field,
        )
    return name


def check_label(name: object, field: str, max_name: int) -> str:
    """A node, an agent or a tag value."""
    name = _text(name, field, max_name)
    if CONTROL_CHARS.search(name):
        raise ProtocolError(f"{field} must not contain control characters", field=field)
    if SURROGATES.search(name):
        raise ProtocolError(
            f"{field} is not valid Unicode (an unpaired surrogate, or bytes that are not UTF-8)",
            field=field,
        )
    return name


def check_tags(tags: object, limits: Limits) -> tuple[tuple[str, str], ...]:
    """The tags' items sorted by key; () for none."""
    if not tags:
        if tags is None or type(tags) is dict:
            return ()
        raise ProtocolError("tags must be an object of strings", field="tags")
    if type(tags) is not dict:
        raise ProtocolError("tags must be an object of strings", field="tags")
    if len(tags) > limits.max_tags:
        raise ProtocolError(f"too many tags: {len(tags)} > {limits.max_tags}", field="tags")
    items = tuple(sorted(tags.items()))
    for k, v in items:
        check_name(k, f"tags.{k}", limits.max_name)
        check_label(v, f"tags.{k}", limits.max_name)
    return items


def instant(text: str) -> float:
    """Unix seconds of a text that is RFC 3339 with a time zone or a number of Unix seconds, as
    URLs and command lines give times. Raises ValueError saying which forms it takes."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.timestamp()
    else:
        if math.isfinite(seconds):
            return seconds
    raise ValueError(
        f"{text[:40]!r} is neither RFC 3339 with a time zone (2026-12-05T10:00:00Z) nor Unix seconds"
    )


def parse_ts(ts: object, now: float, limits: Limits) -> float:
    """Unix seconds of an RFC 3339 string with an offset or of a number, within the limits'
    window around `now`."""
    t = type(ts)
    if t is str:
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            raise ProtocolError(f"ts {ts[:40]!r} is not an RFC 3339 timestamp", field="ts") from None
        if parsed.tzinfo is None:
            raise ProtocolError("ts needs a time zone offset (e.g. 'Z')", field="ts")
        sec = parsed.timestamp()
    elif t is float or t is int:  # not bool: JSON true is no time
        sec = finite(ts)
        if sec is None:
            raise ProtocolError("ts must be finite", field="ts")
    elif ts is None:
        raise ProtocolError("missing field", field="ts")
    else:
        raise ProtocolError("ts must be an RFC 3339 string or Unix seconds", field="ts")
    if sec > now + limits.max_future_s:
        raise ProtocolError(f"ts is more than {limits.max_future_s:.0f} s in the future", field="ts")
    if sec < now - limits.max_age_s:
        raise ProtocolError(
            f"ts is older than the retention of {limits.max_age_s / 86400:.0f} days", field="ts"
        )
    return sec


def check_value(value: object, metric: str) -> float:
    t = type(value)
    if t is not float and t is not int:  # not bool: JSON true is no measurement
        if value is None:
            raise ProtocolError("missing field", field="value")
        raise ProtocolError("value must be a number", field="value")
    v = finite(value)
    if v is None:
        raise ProtocolError("value must be finite", field="value")
    if v < 0 and metric.endswith(NON_NEGATIVE_SUFFIXES):
        raise ProtocolError(f"{metric} cannot be negative", field="value")
    return v


def finite(number: int | float) -> float | None:
    try:
        v = float(number)
    except OverflowError:  # an integer beyond any float
        return None
    return v if math.isfinite(v) else None
