"""An ExportMetricsServiceRequest into data points with perfdash's names: identity (node and
agent), tags, the metrics each becomes (conventions.py), and the data points refused, each
with the reason, for the answer's partial success.

Nothing here touches the database: cumulative streams are turned into deltas afterwards
(streams.py), and the deltas into a batch (assemble.py).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from itertools import pairwise

import orjson
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, DataPointFlags

from collectors.protocol import CONTROL_CHARS, NAME, NON_NEGATIVE_SUFFIXES, SURROGATES, Limits
from perfdash.metrics.batch import SeriesKey
from perfdash.otlp import conventions
from perfdash.otlp.histograms import Histogram

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
NO_RECORDED_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
UNKNOWN = "unknown"
# What each stream becomes, per process and set-up (token, identity settings, limits): a
# stream's name, tags and digest are the same at every export.
_described: dict[tuple, dict[tuple, tuple]] = {}
_DESCRIBED_MAX = 200_000
# Buckets of one histogram (a side of an exponential one): the SDKs' defaults use 160 at most.
MAX_BUCKETS = 4096
_NOT_TAG_KEY = re.compile(r"[^a-zA-Z0-9_.]")


@dataclass(frozen=True)
class Identity:
    """Which attributes name the node and the agent (first found wins), and which resource
    attributes become which tags (settings OTLP_NODE_ATTRIBUTES, OTLP_AGENT_ATTRIBUTES,
    OTLP_RESOURCE_TAGS)."""

    node: tuple[str, ...]
    agent: tuple[str, ...]
    resource_tags: dict[str, str]


@dataclass
class Output:
    series: SeriesKey
    keep: str  # "value", "histogram", "sum" or "count"
    factor: float = 1.0


@dataclass
class Point:
    """One OTLP data point: a number or a histogram, the stream it continues when cumulative
    (a digest of its identity), and what it becomes."""

    time_ns: int
    start_ns: int
    value: float | None
    histogram: Histogram | None
    stream: bytes | None  # set for cumulative sums and histograms
    outputs: list[Output]


@dataclass
class Report:
    """What the answer's partial success says."""

    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    dropped_attributes: int = 0

    def reject(self, message: str, count: int = 1) -> None:
        self.rejected += count
        if len(self.errors) < 1:
            self.errors.append(message)

    def message(self) -> str:
        parts = []
        if self.rejected:
            parts.append(f"{self.rejected} data points rejected; the first: {self.errors[0]}")
        if self.dropped_attributes:
            parts.append(
                f"{self.dropped_attributes} attributes dropped (over the tag limit or not valid as tags)"
            )
        return "; ".join(parts)


class Rejected(Exception):
    pass


def _any(value) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "array_value":
        return orjson.dumps([_any(v) for v in value.array_value.values]).decode()
    if kind == "kvlist_value":
        return orjson.dumps({kv.key: _any(kv.value) for kv in value.kvlist_value.values}).decode()
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return ""


def attributes(kvs) -> dict[str, str]:
    return {kv.key: _any(kv.value) for kv in kvs}


class Translator:
    def __init__(
        self, token_id: int, identity: Identity, limits: Limits, dimension_tags: tuple[str, ...], now: float
    ):
        self.token_id = token_id
        self.identity = identity
        self.limits = limits
        self.dimension_tags = dimension_tags
        self.earliest_ns = int((now - limits.max_age_s) * 1e9)
        self.latest_ns = int((now + limits.max_future_s) * 1e9)
        self.report = Report()
        self.points: list[Point] = []
        setup = (
            token_id,
            identity.node,
            identity.agent,
            tuple(sorted(identity.resource_tags.items())),
            limits.max_tags,
            limits.max_name,
        )
        self.described = _described.setdefault(setup, {})

    def request(self, req: ExportMetricsServiceRequest) -> list[Point]:
        for rm in req.resource_metrics:
            resource = attributes(rm.resource.attributes)
            resource_id = orjson.dumps(sorted(resource.items()))
            extra_tags = {tag: resource[a] for a, tag in self.identity.resource_tags.items() if a in resource}
            for sm in rm.scope_metrics:
                scope_id = resource_id + b"\0" + sm.scope.name.encode() + b"\0" + sm.scope.version.encode()
                for metric in sm.metrics:
                    self.metric(metric, resource, extra_tags, scope_id)
        return self.points

    def metric(self, metric, resource: dict[str, str], extra_tags: dict[str, str], scope_id: bytes) -> None:
        kind = metric.WhichOneof("data")
        if kind == "gauge":
            data, cumulative, counter = metric.gauge, False, False
        elif kind == "sum":
            data = metric.sum
            counter = data.is_monotonic
            # A non-monotonic sum is a level (an up-down counter): its last value, like a gauge.
            cumulative = counter and data.aggregation_temporality == CUMULATIVE
        elif kind in ("histogram", "exponential_histogram"):
            data = getattr(metric, kind)
            cumulative, counter = data.aggregation_temporality == CUMULATIVE, False
        else:
            n = len(metric.summary.data_points) if kind == "summary" else 0
            self.report.reject(f"metric {metric.name!r}: {kind or 'no data'} is not supported", max(n, 1))
            return
        for dp in data.data_points:
            if dp.flags & NO_RECORDED_VALUE:
                continue
            try:
                self.points.append(
                    self.point(metric, kind, dp, cumulative, counter, resource, extra_tags, scope_id)
                )
            except Rejected as exc:
                self.report.reject(f"metric {metric.name!r}: {exc}")

    def point(self, metric, kind, dp, cumulative, counter, resource, extra_tags, scope_id) -> Point:
        attrs = attributes(dp.attributes)
        if not dp.time_unix_nano:
            raise Rejected("a data point without time_unix_nano")
        if not self.earliest_ns <= dp.time_unix_nano <= self.latest_ns:
            raise Rejected("time_unix_nano is too far in the future or older than the rollup retention")
        value = histogram = None
        if kind in ("gauge", "sum"):
            value = float(dp.as_int) if dp.WhichOneof("value") == "as_int" else dp.as_double
            if not math.isfinite(value):
                raise Rejected("value must be finite")
        else:
            histogram = _histogram(kind, dp)
        # A stream repeats every export: what it becomes is worked out once per process.
        key = (scope_id, metric.name, metric.unit, kind, counter, cumulative, tuple(attrs.items()))
        described = self.described.get(key)
        if described is None:
            described = self.describe(
                metric, kind, cumulative, counter, attrs, resource, extra_tags, scope_id
            )
            if len(self.described) >= _DESCRIBED_MAX:
                self.described.clear()
            self.described[key] = described
        outputs, stream, dropped = described
        self.report.dropped_attributes += dropped
        if value is not None and value < 0 and outputs[0].series[0].endswith(NON_NEGATIVE_SUFFIXES):
            raise Rejected(f"{outputs[0].series[0]} cannot be negative")
        return Point(dp.time_unix_nano, dp.start_time_unix_nano, value, histogram, stream, outputs)

    def describe(self, metric, kind, cumulative, counter, attrs, resource, extra_tags, scope_id):
        """(outputs, the stream's digest if cumulative, attributes dropped) of a stream."""
        node = self.pick(self.identity.node, attrs, resource, "node")
        agent = self.pick(self.identity.agent, attrs, resource, "agent")
        stream = None
        if cumulative:
            identity = orjson.dumps([self.token_id, metric.name, kind, sorted(attrs.items())])
            stream = hashlib.blake2b(scope_id + b"\0" + identity, digest_size=16).digest()
        is_histogram = kind not in ("gauge", "sum")
        rule = conventions.rule_for(metric.name, attrs) if is_histogram else None
        dropped = self.report.dropped_attributes
        outputs = self.outputs(metric, rule, counter, is_histogram, attrs, extra_tags, node, agent)
        return outputs, stream, self.report.dropped_attributes - dropped

    def outputs(self, metric, rule, counter, is_histogram, attrs, extra_tags, node, agent) -> list[Output]:
        used = self.identity.node + self.identity.agent
        if rule is None:
            name = conventions.metric_name(metric.name, metric.unit, counter)
            own = {k: v for k, v in attrs.items() if k not in used}
            factor = conventions.unit_of(metric.unit)[1]
            series = self.series(name, node, agent, {}, own, extra_tags)
            return [Output(series, "histogram" if is_histogram else "value", factor)]
        dims = {}
        for tag in rule.tags:
            v = conventions.dimension_value(tag, attrs)
            if v is not None:
                dims[tag] = v
        own = {k: v for k, v in attrs.items() if k not in used and k not in conventions.CONSUMED}
        factor = conventions.unit_of(metric.unit)[1] if rule.keep == "histogram" else 1.0
        out = [Output(self.series(rule.metric, node, agent, dims, own, extra_tags), rule.keep, factor)]
        if conventions.ERROR in attrs:
            error_dims = {k: v for k, v in dims.items() if k != "type"} | {"error": attrs[conventions.ERROR]}
            out.append(
                Output(self.series(conventions.ERRORS, node, agent, error_dims, {}, extra_tags), "count")
            )
        return out

    def pick(self, names: tuple[str, ...], attrs: dict[str, str], resource: dict[str, str], what: str) -> str:
        for name in names:
            value = attrs.get(name) or resource.get(name)
            if value:
                if (
                    len(value) > self.limits.max_name
                    or CONTROL_CHARS.search(value)
                    or SURROGATES.search(value)
                ):
                    raise Rejected(
                        f"{what} from {name!r} is not a valid name (1 to {self.limits.max_name} characters)"
                    )
                return value
        return UNKNOWN

    def series(self, metric, node, agent, dims, own, extra_tags) -> SeriesKey:
        if not 1 <= len(metric) <= self.limits.max_name or not NAME.match(metric):
            raise Rejected(f"metric name {metric!r} is not valid (1 to {self.limits.max_name} characters)")
        tags: dict[str, str] = {}
        # Dimension tags first: over the limit, the others are the ones dropped.
        for k, v in [*dims.items(), *extra_tags.items(), *sorted(own.items())]:
            key = _NOT_TAG_KEY.sub("_", k)
            if key[:1].isdigit():
                key = "_" + key
            ok = key and len(key) <= self.limits.max_name and 1 <= len(v) <= self.limits.max_name
            ok = ok and not CONTROL_CHARS.search(v) and not SURROGATES.search(v)
            if not ok or key in tags or len(tags) >= self.limits.max_tags:
                self.report.dropped_attributes += 1
                continue
            tags[key] = v
        return (metric, node, agent, orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode())


def _histogram(kind: str, dp) -> Histogram:
    h = _read_histogram(kind, dp)
    if max(h.count, *h.counts, *h.pos, *h.neg, h.zero) >= 1 << 63:
        raise Rejected("histogram counts are too large")
    if not h.buckets_consistent():
        raise Rejected("bucket counts do not add up to count")
    return h


def _read_histogram(kind: str, dp) -> Histogram:
    lo = dp.min if dp.HasField("min") else None
    hi = dp.max if dp.HasField("max") else None
    total = dp.sum if dp.HasField("sum") else None
    for name, v in (("sum", total), ("min", lo), ("max", hi)):
        if v is not None and not math.isfinite(v):
            raise Rejected(f"histogram {name} must be finite")
    if kind == "histogram":
        bounds = list(dp.explicit_bounds)
        if len(bounds) > MAX_BUCKETS:
            raise Rejected(f"more than {MAX_BUCKETS} buckets")
        if not all(map(math.isfinite, bounds)) or any(a >= b for a, b in pairwise(bounds)):
            raise Rejected("explicit_bounds must be finite and increasing")
        counts = list(dp.bucket_counts)
        if not counts and dp.count:
            # Buckets are optional: a histogram without them is its count, sum, min and max.
            bounds, counts = [], [dp.count]
        return Histogram(dp.count, total, lo, hi, bounds, counts)
    if not -10 <= dp.scale <= 20:
        raise Rejected("exponential histogram scale must be within -10 to 20")
    for side in (dp.positive, dp.negative):
        if len(side.bucket_counts) > MAX_BUCKETS:
            raise Rejected(f"more than {MAX_BUCKETS} buckets")
        # Every bound must be a finite float: |log2| of at most 1000.
        if max(abs(side.offset), abs(side.offset + len(side.bucket_counts))) * 2.0**-dp.scale > 1000:
            raise Rejected("exponential histogram buckets beyond the range of a float")
    return Histogram(
        dp.count, total, lo, hi,
        scale=dp.scale, zero=dp.zero_count,
        pos_offset=dp.positive.offset, pos=list(dp.positive.bucket_counts),
        neg_offset=dp.negative.offset, neg=list(dp.negative.bucket_counts),
    )  # fmt: skip
