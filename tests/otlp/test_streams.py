"""Cumulative streams into deltas, with the state in PostgreSQL: the first export counts from
its start, duplicates and exports out of order count nothing, a reset (a new start time, or a
value that went down) counts from zero again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from perfdash.api.models import ApiToken
from perfdash.ingest.validate import Limits
from perfdash.metrics import query
from perfdash.otlp import temporality
from perfdash.otlp.histograms import Histogram
from perfdash.otlp.models import StreamState
from perfdash.otlp.receive import identity
from perfdash.otlp.tasks import forget_streams
from perfdash.otlp.translate import Points, Translator
from tests.otlp.conftest import store

NOW = time.time()
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def counter_export(value: int, start: float, at: float) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    kv = rm.resource.attributes.add(key="gen_ai.agent.id")
    kv.value.string_value = "agent-1"
    metric = rm.scope_metrics.add().metrics.add(name="requests", unit="{request}")
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = CUMULATIVE
    dp = metric.sum.data_points.add(as_int=value, time_unix_nano=int(at * 1e9))
    dp.start_time_unix_nano = int(start * 1e9) if start else 0
    return request.SerializeToString()


@pytest.fixture
def token_id(db) -> int:
    return ApiToken.issue("otel", ["ingest"])[0].id


def total() -> float:
    return query.stats("requests_total", 3600, now=NOW)["sum"] or 0


def test_a_cumulative_counter_counts_each_increment_once(token_id):
    start = NOW - 300
    steps = [
        (10, start, NOW - 200, 10),  # the first export counts from the stream's start
        (15, start, NOW - 190, 15),
        (15, start, NOW - 190, 15),  # the same export again
        (12, start, NOW - 195, 15),  # an older export arriving late
        (3, NOW - 100, NOW - 90, 18),  # a restart: a new start time
        (1, NOW - 100, NOW - 80, 19),  # went down: a reset even with the same start
        (4, NOW - 100, NOW - 70, 22),
    ]
    for value, began, at, want in steps:
        store(token_id, counter_export(value, began, at), now=NOW)
        assert total() == want
    assert StreamState.objects.count() == 1


def test_a_stream_without_start_times_resets_when_its_value_goes_down(token_id):
    for value, at in [(5, NOW - 60), (7, NOW - 50), (2, NOW - 40)]:
        store(token_id, counter_export(value, 0, at), now=NOW)
    assert total() == 9


def test_an_exponential_histogram_minus_an_earlier_one_at_a_finer_scale():
    before = Histogram(3, 6.0, 1.0, 3.0, scale=1, pos_offset=0, pos=[1, 1, 1])
    now = Histogram(5, 16.0, 1.0, 6.0, scale=0, pos_offset=0, pos=[2, 1, 2])
    delta = now.minus(before)
    # At scale 0 the earlier buckets 0, 1, 2 are 0, 0, 1.
    assert (delta.scale, delta.pos_offset, delta.pos) == (0, 0, [0, 0, 2])
    assert (delta.count, delta.sum, delta.min, delta.max) == (2, 10.0, None, 6.0)


def histogram_export(counts: list[int], at: float) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="gen_ai.agent.id").value.string_value = "agent-1"
    metric = rm.scope_metrics.add().metrics.add(name="work.duration", unit="ms")
    metric.histogram.aggregation_temporality = CUMULATIVE
    dp = metric.histogram.data_points.add(
        time_unix_nano=int(at * 1e9), start_time_unix_nano=int((NOW - 600) * 1e9)
    )
    dp.count, dp.sum, dp.min, dp.max = sum(counts), 2.0 * sum(counts), 1.0, 3.0
    dp.explicit_bounds.extend([1.0, 2.0])
    dp.bucket_counts.extend(counts)
    return request


def test_a_histogram_whose_buckets_went_down_is_a_reset():
    def points(counts: list[int], at: float) -> Points:
        return Translator(1, identity(), Limits(), ("tool",), NOW).request(histogram_export(counts, at))

    _, blobs = temporality.apply(points([1, 1, 1], NOW - 300), temporality.State(), 0)
    # The same count and start, but a bucket went down: counted whole, as sent.
    after = points([2, 0, 1], NOW - 200)
    added, _ = temporality.apply(after, temporality.State.of_blobs(blobs), 0)
    assert (added.count[0], added.value[0], added.buckets.tolist()) == (3, 6.0, [2, 0, 1])


def test_a_retried_export_is_the_same_batch(token_id):
    body = counter_export(10, NOW - 300, NOW - 200)
    store(token_id, body, now=NOW)
    store(token_id, body, now=NOW)
    assert total() == 10


def test_streams_not_exported_for_the_retention_are_forgotten(token_id):
    store(token_id, counter_export(10, NOW - 300, NOW - 200), now=NOW)
    StreamState.objects.update(updated_at=datetime.now(UTC) - timedelta(days=91))
    assert forget_streams() == 1
    assert not StreamState.objects.exists()


def test_an_export_that_moves_no_stream_writes_no_row(token_id):
    store(token_id, counter_export(15, NOW - 300, NOW - 190), now=NOW)
    old = datetime.now(UTC) - timedelta(days=1)
    StreamState.objects.update(updated_at=old)
    store(token_id, counter_export(12, NOW - 300, NOW - 195), now=NOW)  # older: adds nothing
    assert StreamState.objects.get().updated_at == old
    store(token_id, counter_export(16, NOW - 300, NOW - 180), now=NOW)
    assert StreamState.objects.get().updated_at > old
    assert total() == 16
