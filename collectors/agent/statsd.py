"""StatsD and DogStatsD datagrams to perfdash points: pure parsing, bytes in, points out.

One datagram holds lines separated by newlines, each

    name:value[:value...]|type[|@rate][|#tag:v,tag2:v2][|T<unix seconds>][|c:…][|e:…][|card:…]

Timers, histograms and distributions (`ms`, `h`, `d`) become latency metrics named
`<name>_ms`, counters (`c`) `<name>_total` (divided by their sample rate), gauges (`g`) keep
their name; dots and dashes in names become underscores. This is what Elixir's
telemetry_metrics_statsd and the Datadog clients emit. The tags `agent` and `node` say whose
point it is and are not kept as tags. Sets, events and service checks are well-formed but
have no perfdash metric: they are counted as ignored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from collectors.protocol import COUNTER_SUFFIX, LATENCY_SUFFIX

SUFFIXES = {"ms": LATENCY_SUFFIX, "h": LATENCY_SUFFIX, "d": LATENCY_SUFFIX, "c": COUNTER_SUFFIX, "g": ""}
IGNORED_TYPES = frozenset(("s",))
IGNORED_LINES = (b"_e{", b"_sc|")  # DogStatsD events and service checks
# DogStatsD origin-detection fields (container id, external data, cardinality) only mean
# something to a Datadog agent.
ORIGIN_FIELDS = ("c:", "e:", "card:")
# Stricter than float(), which also takes "nan", "inf" and "1_000".
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")


@dataclass(frozen=True, slots=True)
class StatsdPoint:
    metric: str
    value: float
    tags: dict[str, str]
    agent: str | None = None  # from the `agent` tag
    node: str | None = None  # from the `node` tag
    ts: float | None = None  # from a DogStatsD `|T` field


@dataclass(frozen=True, slots=True)
class LineError:
    problem: str  # the same text for every line with the same mistake
    line: str


@dataclass
class Parsed:
    points: list[StatsdPoint] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)  # one per malformed line
    ignored: int = 0  # well-formed lines with no perfdash metric


class Malformed(ValueError):
    pass


def parse(datagram: bytes) -> Parsed:
    out = Parsed()
    for raw in datagram.split(b"\n"):
        line = raw.strip()  # some clients end lines with \r\n
        if not line:
            continue
        if line.startswith(IGNORED_LINES):
            out.ignored += 1
            continue
        try:
            text = line.decode()
        except UnicodeDecodeError:
            out.errors.append(LineError("line is not UTF-8", line.decode(errors="replace")))
            continue
        try:
            points = parse_line(text)
        except Malformed as exc:
            out.errors.append(LineError(str(exc), text))
            continue
        if points:
            out.points.extend(points)
        else:
            out.ignored += 1
    return out


def parse_line(line: str) -> list[StatsdPoint]:
    """The points of one line, or [] for a well-formed line of a type perfdash does not keep."""
    head, *fields = line.split("|")
    name, colon, values = head.partition(":")
    if not fields or not colon or not name or not values:
        raise Malformed("expected name:value|type")
    kind = fields[0]
    if kind in IGNORED_TYPES:
        return []
    metric = metric_name(name, kind)
    rate, tags, ts = 1.0, {}, None
    for extra in fields[1:]:
        if extra.startswith("@"):
            rate = sample_rate(extra[1:])
        elif extra.startswith("#"):
            tags = parse_tags(extra[1:])
        elif extra.startswith("T"):
            ts = number(extra[1:], "timestamp")
        elif not extra.startswith(ORIGIN_FIELDS):
            raise Malformed("unknown field after the type")
    agent, node = tags.pop("agent", None), tags.pop("node", None)
    numbers = [number(v, "value") for v in values.split(":")]
    if kind == "c":
        # A counter sampled at rate r stands for 1/r as many events. Timers and gauges are
        # single measurements: each one received is one point, whatever the rate.
        numbers = [v / rate for v in numbers]
    return [StatsdPoint(metric, v, tags, agent, node, ts) for v in numbers]


def metric_name(name: str, kind: str) -> str:
    suffix = SUFFIXES.get(kind)
    if suffix is None:
        raise Malformed(f"unknown metric type {kind[:10]!r}")
    base = name.replace(".", "_").replace("-", "_")
    return base if base.endswith(suffix) else base + suffix


def parse_tags(text: str) -> dict[str, str]:
    tags = {}
    for tag in text.split(","):
        key, _, value = tag.partition(":")
        # perfdash tags are key:value dimensions; a bare DogStatsD tag (`#urgent`) has no
        # dimension to go in, so it is left out rather than costing the whole point.
        if key and value:
            tags[key.replace("-", "_")] = value
    return tags


def sample_rate(text: str) -> float:
    rate = number(text, "sample rate")
    if not 0 < rate <= 1:
        raise Malformed("sample rate must be more than 0 and at most 1")
    return rate


def number(text: str, what: str) -> float:
    if not NUMBER.match(text):
        raise Malformed(f"{what} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise Malformed(f"{what} is too large")
    return value
