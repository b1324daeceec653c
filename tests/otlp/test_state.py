"""The streams' state, one row per metric of a resource and scope: a delta up-down counter
summed into its level, several exports of one stream in one request, a stream kept one row
each before the rows per metric, a row's streams forgotten one by one, an exponential
histogram's delta in the columns, and one retention cut-off for data points and state."""

from __future__ import annotations

import math
import time

import pytest
from django.db import connection
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality

from perfdash.api.models import ApiToken
from perfdash.ingest.validate import Limits
from perfdash.metrics import query
from perfdash.otlp import temporality, wire
from perfdash.otlp.models import Stream, StreamState
from perfdash.otlp.receive import identity
from perfdash.otlp.translate import Points, Translator, earliest_ns
from tests.otlp.conftest import Sdk, store

NOW = time.time()
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


@pytest.fixture
def token_id(db) -> int:
    return ApiToken.issue("otel", ["ingest"])[0].id


def stored_values(metric: str) -> list[float]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT p.value FROM metrics_point p JOIN metrics_series s ON s.id = p.series_id "
            "WHERE s.metric = %s ORDER BY p.ts",
            [metric],
        )
        return [r[0] for r in cur.fetchall()]


def test_a_delta_up_down_counter_is_stored_as_its_running_level(token_id):
    sdk = Sdk({UpDownCounter: AggregationTemporality.DELTA}, **{"gen_ai.agent.id": "agent-q"})
    depth = sdk.meter.create_up_down_counter("queue.depth")
    bodies = []
    for change in (5, -2, 0, 3, -6):
        if not change:
            assert sdk.reader.get_metrics_data() is None  # no change: the SDK exports nothing
            continue
        depth.add(change)
        bodies.append(sdk.collect())
        store(token_id, bodies[-1])
    # The delta after the interval without changes starts where that interval began.
    assert stored_values("queue.depth") == [5, 3, 6, 0]
    store(token_id, bodies[1])  # a retry of an earlier export: stored once
    assert stored_values("queue.depth") == [5, 3, 6, 0]


def test_a_delta_up_down_counter_s_late_export_adds_nothing(token_id):
    sdk = Sdk({UpDownCounter: AggregationTemporality.DELTA}, **{"gen_ai.agent.id": "agent-q"})
    depth = sdk.meter.create_up_down_counter("queue.depth")
    depth.add(4)
    first = sdk.collect()
    depth.add(1)
    store(token_id, sdk.collect())
    # The first export, arriving after the second (and so not the same body: another metric
    # rides along): its stream has moved past it.
    late = wire.decode(first, wire.PROTOBUF)
    extra = late.resource_metrics[0].scope_metrics[0].metrics.add(name="other.gauge")
    extra.gauge.data_points.add(as_int=1, time_unix_nano=int(time.time() * 1e9))
    store(token_id, late.SerializeToString())
    assert stored_values("queue.depth") == [1]


def counter_request(*exports: tuple[int, float], start: float = NOW - 600) -> bytes:
    """One request holding several exports of one cumulative counter (a Collector batching
    intervals of one agent), each as (value, time)."""
    request = ExportMetricsServiceRequest()
    for value, at in exports:
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="gen_ai.agent.id").value.string_value = "agent-1"
        metric = rm.scope_metrics.add().metrics.add(name="requests", unit="{request}")
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = CUMULATIVE
        metric.sum.data_points.add(
            as_int=value, time_unix_nano=int(at * 1e9), start_time_unix_nano=int(start * 1e9)
        )
    return request.SerializeToString()


def total() -> float:
    return query.stats("requests_total", 3600, now=NOW)["sum"] or 0


def test_exports_of_one_stream_in_one_request_count_in_time_order(token_id):
    store(token_id, counter_request((15, NOW - 100), (10, NOW - 200), (15, NOW - 100)), now=NOW)
    assert total() == 15
    assert sorted(stored_values("requests_total")) == [5, 10]


def points(req: ExportMetricsServiceRequest) -> Points:
    """A request's data points, translated for token 1."""
    return Translator(1, identity(), Limits(), ("tool",), NOW).request(req)


def test_a_stream_kept_in_the_table_of_before_goes_on_from_there(token_id):
    # The digest the translator gives for this token's stream.
    probe = Translator(token_id, identity(), Limits(), ("tool",), NOW)
    key = probe.request(wire.decode(counter_request((1, NOW - 300)), wire.PROTOBUF)).stream[0]
    Stream.objects.create(
        key=key, start_ns=int((NOW - 600) * 1e9), time_ns=int((NOW - 300) * 1e9), state=b'{"value": 10}'
    )
    store(token_id, counter_request((10, NOW - 300)), now=NOW)  # the same export again
    store(token_id, counter_request((14, NOW - 200)), now=NOW)
    assert total() == 4


def test_an_explicit_histogram_kept_in_the_table_of_before_goes_on_from_there(token_id):
    def export(counts: list[int], at: float) -> bytes:
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="gen_ai.agent.id").value.string_value = "agent-1"
        metric = rm.scope_metrics.add().metrics.add(name="work.duration", unit="ms")
        metric.histogram.aggregation_temporality = CUMULATIVE
        dp = metric.histogram.data_points.add(
            time_unix_nano=int(at * 1e9), start_time_unix_nano=int((NOW - 600) * 1e9)
        )
        dp.count, dp.sum = sum(counts), 10.0 * sum(counts)
        dp.explicit_bounds.extend([5.0, 20.0])
        dp.bucket_counts.extend(counts)
        return request.SerializeToString()

    probe = Translator(token_id, identity(), Limits(), ("tool",), NOW)
    key = probe.request(wire.decode(export([1, 1, 1], NOW - 300), wire.PROTOBUF)).stream[0]
    state = b'{"count": 3, "sum": 30.0, "min": null, "max": null, "bounds": [5.0, 20.0], "counts": [1, 1, 1]}'
    Stream.objects.create(
        key=key, start_ns=int((NOW - 600) * 1e9), time_ns=int((NOW - 300) * 1e9), state=state
    )
    store(token_id, export([2, 3, 1], NOW - 200), now=NOW)
    stats = query.stats("work.duration_ms", 3600, now=NOW)
    assert (stats["count"], stats["sum"]) == (3, 30.0)


def test_a_metric_s_streams_share_one_row_and_a_stale_one_is_forgotten():
    def request(at: float, tools: list[str]) -> ExportMetricsServiceRequest:
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        rm.resource.attributes.add(key="gen_ai.agent.id").value.string_value = "agent-1"
        metric = rm.scope_metrics.add().metrics.add(name="calls")
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = CUMULATIVE
        for tool in tools:
            dp = metric.sum.data_points.add(as_int=3, time_unix_nano=int(at * 1e9))
            dp.attributes.add(key="tool").value.string_value = tool
        return req

    first = points(request(NOW - 300, ["a", "b", "c"]))
    added, blobs = temporality.apply(first, temporality.State(), 0)
    assert len(blobs) == 1 and added.value.tolist() == [3, 3, 3]
    state = temporality.State.of_blobs(blobs)
    assert len(state.keys) == 3
    # Only "a" exported since; "b" and "c" last exported before the cut-off are left out.
    later = points(request(NOW - 100, ["a"]))
    added, blobs = temporality.apply(later, state, int((NOW - 200) * 1e9))
    assert added.value.tolist() == [0]
    assert temporality.State.of_blobs(blobs).keys == [later.stream[0]]


def test_new_bounds_are_a_reset(token_id):
    def export(bounds: list[float], counts: list[int], at: float) -> bytes:
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.add(key="gen_ai.agent.id").value.string_value = "agent-1"
        metric = rm.scope_metrics.add().metrics.add(name="work.duration", unit="ms")
        metric.histogram.aggregation_temporality = CUMULATIVE
        dp = metric.histogram.data_points.add(time_unix_nano=int(at * 1e9))
        dp.count, dp.sum = sum(counts), 10.0 * sum(counts)
        dp.explicit_bounds.extend(bounds)
        dp.bucket_counts.extend(counts)
        return request.SerializeToString()

    store(token_id, export([5.0, 20.0], [1, 1, 1], NOW - 300), now=NOW)
    store(token_id, export([5.0, 20.0], [2, 1, 1], NOW - 250), now=NOW)  # adds 1
    store(token_id, export([5.0, 10.0, 20.0], [2, 1, 1, 1], NOW - 200), now=NOW)  # counted whole
    assert query.stats("work.duration_ms", 3600, now=NOW)["count"] == 3 + 1 + 5
    assert StreamState.objects.count() == 1


def exponential_request(at: float, pos: list[int], lo: float, hi: float) -> ExportMetricsServiceRequest:
    """One export of a cumulative exponential histogram (scale 0: bucket i is (2^i, 2^(i+1)])."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="gen_ai.agent.id").value.string_value = "agent-1"
    metric = rm.scope_metrics.add().metrics.add(name="work.duration", unit="ms")
    metric.exponential_histogram.aggregation_temporality = CUMULATIVE
    dp = metric.exponential_histogram.data_points.add(
        time_unix_nano=int(at * 1e9), start_time_unix_nano=int((NOW - 600) * 1e9)
    )
    dp.count, dp.sum, dp.min, dp.max = sum(pos), 3.0 * sum(pos), lo, hi
    dp.positive.offset = 0
    dp.positive.bucket_counts.extend(pos)
    return req


def test_an_exponential_histogram_s_columns_are_what_it_added():
    first = points(exponential_request(NOW - 300, [1, 2], 1.5, 3.5))
    added, blobs = temporality.apply(first, temporality.State(), 0)
    assert (added.count[0], added.value[0], added.lo[0], added.hi[0]) == (3, 9.0, 1.5, 3.5)
    later = points(exponential_request(NOW - 200, [1, 3, 1], 1.5, 6.0))
    added, _ = temporality.apply(later, temporality.State.of_blobs(blobs), 0)
    delta = added.histograms[0]
    assert (delta.pos_offset, delta.pos, delta.count, delta.sum) == (0, [0, 1, 1], 2, 6.0)
    # The columns say the same as the histogram: min not moved (NaN), max moved.
    assert (added.count[0], added.value[0], added.hi[0]) == (2, 6.0, 6.0)
    assert math.isnan(added.lo[0]) and (added.within_lo[0], added.within_hi[0]) == (1.5, 6.0)


def test_a_data_point_taken_within_the_retention_keeps_its_stream_s_state():
    at = earliest_ns(NOW) / 1e9
    probe = Translator(1, identity(), Limits(), ("tool",), NOW)
    too_old = probe.request(exponential_request(at - 1, [1], 1.5, 1.5))
    assert not len(too_old) and probe.report.rejected == 1
    kept = points(exponential_request(at + 1, [1], 1.5, 1.5))
    _, blobs = temporality.apply(kept, temporality.State(), earliest_ns(NOW))
    assert temporality.State.of_blobs(blobs).keys == [kept.stream[0]]
