"""An ExportMetricsServiceRequest into data points with perfdash's names: identity (node and
agent), tags, the metrics each becomes (conventions.py), and the data points refused, each
with the reason, for the answer's partial success.

Nothing here touches the database: the data points come out as columns (`Points`), whose
streams' state is applied afterwards (temporality.py, models.py), and the result made into a
batch (assemble.py).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import orjson
from django.conf import settings
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, DataPointFlags

from collectors.protocol import CONTROL_CHARS, NAME, NON_NEGATIVE_SUFFIXES, SURROGATES, Limits
from perfdash.lib.durations import DAY_S
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


# What a data point is, and what its stream's state does with it (temporality.py).
NUMBER, EXPLICIT, EXPONENTIAL = 0, 1, 2
AS_SENT, TO_DELTA, TO_LEVEL = 0, 1, 2
NAN = math.nan
_FLOAT_COLUMNS = frozenset({"value", "lo", "hi"})


def earliest_ns(now: float) -> int:
    """The oldest time_unix_nano taken: the rollup retention back from `now` (past it a data
    point's values are gone anyway). Older data points are refused (Translator), and streams
    last exported before it are forgotten (temporality.apply): one cut-off for both, so an
    export never forgets a stream it has just taken a data point of."""
    return int((now - settings.ROLLUP_RETENTION_DAYS * DAY_S) * 1e9)


@dataclass
class Points:
    """An export's data points as columns, one entry per data point, so the streams' state
    and the batch are worked out for all of them at once (temporality.py, assemble.py), not
    point by point.

    `mode`: AS_SENT (a gauge, a delta counter or histogram, a cumulative up-down counter),
    TO_DELTA (a cumulative counter or histogram: stored as what it added since the stream's
    last export) or TO_LEVEL (a delta up-down counter: stored as the running level)."""

    time_ns: list[int] = field(default_factory=list)
    start_ns: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    mode: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)  # a number, or a histogram's sum (NaN: not sent)
    count: list[int] = field(default_factory=list)  # histograms: their count
    lo: list[float] = field(default_factory=list)  # histograms: min and max, NaN where not sent
    hi: list[float] = field(default_factory=list)
    # Explicit: the index of its bounds in `bounds`; exponential: the scale.
    layout: list[int] = field(default_factory=list)
    # Exponential: zero count, positive offset, number of positive buckets, negative offset.
    exp: list[tuple[int, int, int, int]] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)  # every histogram's bucket counts, in turn
    nbuckets: list[int] = field(default_factory=list)
    stream: list[bytes | None] = field(default_factory=list)  # set where mode is not AS_SENT
    group: list[bytes | None] = field(default_factory=list)  # the state row holding the stream
    outputs: list[list[Output]] = field(default_factory=list)
    bounds: list[tuple[float, ...]] = field(default_factory=list)  # explicit bounds, each once
    bounds_digest: list[int] = field(default_factory=list)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.time_ns)

    def array(self, column: str) -> np.ndarray:
        """A column as a numpy array, made once for the stages that read it, so read-only:
        whoever changes its values works on a copy. Only once the export is translated."""
        out = self._arrays.get(column)
        if out is None:
            out = np.array(getattr(self, column), np.float64 if column in _FLOAT_COLUMNS else np.int64)
            out.flags.writeable = False
            self._arrays[column] = out
        return out

    def histogram(self, i: int, start: int) -> Histogram:
        """Exponential data point i as a Histogram (its buckets from `start` in `buckets`)."""
        end = start + self.nbuckets[i]
        lo, hi, total = (None if math.isnan(x) else x for x in (self.lo[i], self.hi[i], self.value[i]))
        zero, pos_offset, npos, neg_offset = self.exp[i]
        return Histogram(
            self.count[i], total, lo, hi, scale=self.layout[i], zero=zero,
            pos_offset=pos_offset, pos=self.buckets[start : start + npos],
            neg_offset=neg_offset, neg=self.buckets[start + npos : end],
        )  # fmt: skip


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


def attribute_pairs(kvs) -> tuple[tuple[str, str], ...]:
    # Nearly every attribute is a string: read it directly, the others through _any.
    return tuple((kv.key, kv.value.string_value or _any(kv.value)) for kv in kvs)


def attributes(kvs) -> dict[str, str]:
    return dict(attribute_pairs(kvs))


class Translator:
    def __init__(
        self, token_id: int, identity: Identity, limits: Limits, dimension_tags: tuple[str, ...], now: float
    ):
        self.token_id = token_id
        self.identity = identity
        self.limits = limits
        self.dimension_tags = dimension_tags
        # Not limits.max_age_s: the streams' state is kept as long as this (earliest_ns).
        self.earliest_ns = earliest_ns(now)
        self.latest_ns = int((now + limits.max_future_s) * 1e9)
        self.report = Report()
        self.points = Points()
        self._layouts: dict[tuple[float, ...], int] = {}
        setup = (
            token_id,
            identity.node,
            identity.agent,
            tuple(sorted(identity.resource_tags.items())),
            limits.max_tags,
            limits.max_name,
        )
        self.described = _described.setdefault(setup, {})

    def request(self, req: ExportMetricsServiceRequest) -> Points:
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
            data, mode, counter = metric.gauge, AS_SENT, False
        elif kind == "sum":
            data = metric.sum
            counter = data.is_monotonic
            cumulative = data.aggregation_temporality == CUMULATIVE
            # A counter is stored as what it added; a non-monotonic sum (an up-down counter)
            # is a level, stored like a gauge: as sent when cumulative, summed up when delta.
            mode = (TO_DELTA if cumulative else AS_SENT) if counter else (AS_SENT if cumulative else TO_LEVEL)
        elif kind in ("histogram", "exponential_histogram"):
            data = getattr(metric, kind)
            mode, counter = (TO_DELTA if data.aggregation_temporality == CUMULATIVE else AS_SENT), False
        else:
            n = len(metric.summary.data_points) if kind == "summary" else 0
            self.report.reject(f"metric {metric.name!r}: {kind or 'no data'} is not supported", max(n, 1))
            return
        # What identifies the metric's streams, but for their attributes.
        base = (scope_id, metric.name, metric.unit, kind, counter, mode)
        for dp in data.data_points:
            if dp.flags & NO_RECORDED_VALUE:
                continue
            try:
                self.point(metric, base, dp, resource, extra_tags)
            except Rejected as exc:
                self.report.reject(f"metric {metric.name!r}: {exc}")

    def point(self, metric, base: tuple, dp, resource, extra_tags) -> None:
        """Append one data point to the columns, or raise Rejected (leaving them as they were)."""
        scope_id, _, _, kind, counter, mode = base
        attrs = attribute_pairs(dp.attributes)
        t = dp.time_unix_nano
        if not t:
            raise Rejected("a data point without time_unix_nano")
        if not self.earliest_ns <= t <= self.latest_ns:
            raise Rejected("time_unix_nano is too far in the future or older than the rollup retention")
        start = dp.start_time_unix_nano
        if start >= 1 << 63:
            raise Rejected("start_time_unix_nano is beyond the year 2262")
        # A stream repeats every export: what it becomes is worked out once per process.
        key = (base, attrs)
        described = self.described.get(key)
        if described is None:
            as_dict = dict(attrs)
            described = self.describe(metric, kind, mode, counter, as_dict, resource, extra_tags, scope_id)
            if len(self.described) >= _DESCRIBED_MAX:
                self.described.clear()
            self.described[key] = described
        outputs, stream, group, dropped = described
        pts = self.points
        if kind in ("gauge", "sum"):
            value = float(dp.as_int) if dp.WhichOneof("value") == "as_int" else dp.as_double
            if not math.isfinite(value):
                raise Rejected("value must be finite")
            if value < 0 and mode != TO_LEVEL and outputs[0].series[0].endswith(NON_NEGATIVE_SUFFIXES):
                raise Rejected(f"{outputs[0].series[0]} cannot be negative")
            pts.kind.append(NUMBER)
            pts.value.append(value)
            pts.count.append(0)
            pts.lo.append(NAN)
            pts.hi.append(NAN)
            pts.layout.append(0)
            pts.exp.append(())
            pts.nbuckets.append(0)
        elif kind == "histogram":
            self.explicit(dp)
        else:
            self.exponential(dp)
        self.report.dropped_attributes += dropped
        pts.time_ns.append(t)
        pts.start_ns.append(start)
        pts.mode.append(mode)
        pts.stream.append(stream)
        pts.group.append(group)
        pts.outputs.append(outputs)

    def describe(self, metric, kind, mode, counter, attrs, resource, extra_tags, scope_id):
        """(outputs, the stream's digest and its state row's if it has state, attributes
        dropped) of a stream."""
        node = self.pick(self.identity.node, attrs, resource, "node")
        agent = self.pick(self.identity.agent, attrs, resource, "agent")
        stream = group = None
        if mode != AS_SENT:
            identity = orjson.dumps([self.token_id, metric.name, kind, sorted(attrs.items())])
            stream = hashlib.blake2b(scope_id + b"\0" + identity, digest_size=16).digest()
            # One state row per (token, resource, scope, metric): a metric's streams are
            # exported together, and the SDKs bound their number (the cardinality limit).
            of = orjson.dumps([self.token_id, metric.name])
            group = hashlib.blake2b(scope_id + b"\0" + of, digest_size=16).digest()
        is_histogram = kind not in ("gauge", "sum")
        rule = conventions.rule_for(metric.name, attrs) if is_histogram else None
        before = self.report.dropped_attributes
        outputs = self.outputs(metric, rule, counter, is_histogram, attrs, extra_tags, node, agent)
        # Counted by `point`, at every export of the stream.
        dropped, self.report.dropped_attributes = self.report.dropped_attributes - before, before
        return outputs, stream, group, dropped

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

    def explicit(self, dp) -> None:
        lo, hi, total = _summary(dp)
        bounds = tuple(dp.explicit_bounds)
        layout = self._layouts.get(bounds)
        if layout is None:
            if len(bounds) > MAX_BUCKETS:
                raise Rejected(f"more than {MAX_BUCKETS} buckets")
            if not all(map(math.isfinite, bounds)) or any(a >= b for a, b in pairwise(bounds)):
                raise Rejected("explicit_bounds must be finite and increasing")
            layout = self._layout(bounds)
        counts = list(dp.bucket_counts)  # once: each read of the container costs as much
        count = dp.count
        if not counts and count:
            # Buckets are optional: a histogram without them is its count, sum, min and max.
            layout, counts = self._layout(()), [count]
        if count >= 1 << 63 or (counts and max(counts) >= 1 << 63):
            raise Rejected("histogram counts are too large")
        if len(counts) != len(self.points.bounds[layout]) + 1 or sum(counts) != count:
            raise Rejected("bucket counts do not add up to count")
        self._histogram(EXPLICIT, count, total, lo, hi, layout, (), counts)

    def _layout(self, bounds: tuple[float, ...]) -> int:
        layout = self._layouts.get(bounds)
        if layout is None:
            layout = self._layouts[bounds] = len(self.points.bounds)
            self.points.bounds.append(bounds)
            self.points.bounds_digest.append(bounds_digest(bounds))
        return layout

    def exponential(self, dp) -> None:
        lo, hi, total = _summary(dp)
        if not -10 <= dp.scale <= 20:
            raise Rejected("exponential histogram scale must be within -10 to 20")
        for side in (dp.positive, dp.negative):
            if len(side.bucket_counts) > MAX_BUCKETS:
                raise Rejected(f"more than {MAX_BUCKETS} buckets")
            # Every bound must be a finite float: |log2| of at most 1000.
            if max(abs(side.offset), abs(side.offset + len(side.bucket_counts))) * 2.0**-dp.scale > 1000:
                raise Rejected("exponential histogram buckets beyond the range of a float")
        pos, neg = list(dp.positive.bucket_counts), list(dp.negative.bucket_counts)
        if max(dp.count, dp.zero_count, *pos, *neg) >= 1 << 63:
            raise Rejected("histogram counts are too large")
        if dp.zero_count + sum(pos) + sum(neg) != dp.count:
            raise Rejected("bucket counts do not add up to count")
        exp = (dp.zero_count, dp.positive.offset, len(pos), dp.negative.offset)
        self._histogram(EXPONENTIAL, dp.count, total, lo, hi, dp.scale, exp, pos + neg)

    def _histogram(self, kind, count, total, lo, hi, layout, exp, counts) -> None:
        pts = self.points
        pts.kind.append(kind)
        pts.value.append(total)
        pts.count.append(count)
        pts.lo.append(lo)
        pts.hi.append(hi)
        pts.layout.append(layout)
        pts.exp.append(exp)
        pts.buckets.extend(counts)
        pts.nbuckets.append(len(counts))


def bounds_digest(bounds) -> int:
    """Explicit bounds as one int64: a stream whose bounds changed has been reset."""
    digest = hashlib.blake2b(orjson.dumps(list(bounds)), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _summary(dp) -> tuple[float, float, float]:
    """A histogram's min, max and sum, NaN where not sent."""
    out = []
    for name in ("min", "max", "sum"):
        if dp.HasField(name):
            v = getattr(dp, name)
            if not math.isfinite(v):
                raise Rejected(f"histogram {name} must be finite")
            out.append(v)
        else:
            out.append(NAN)
    return out[0], out[1], out[2]
