"""POST /v1/metrics end to end: the official OpenTelemetry exporter → uvicorn → outbox →
a real Celery worker → rollups, read back through /api/v1/stats; and the answers to bad
exports."""

from __future__ import annotations

import gzip

import httpx
import numpy as np
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from perfdash.ingest.models import IngestedBatch, PendingBatch
from perfdash.otlp import wire
from tests.conftest import wait_until
from tests.otlp.conftest import DELTA, Sdk

pytestmark = pytest.mark.slow


def provider(url: str, token: str, agent: str, delta: bool, exponential: bool) -> MeterProvider:
    exporter = OTLPMetricExporter(
        endpoint=f"{url}/v1/metrics",
        headers={"Authorization": f"Bearer {token}"},
        compression=Compression.Gzip,
        preferred_temporality=DELTA if delta else None,
    )
    # An interval far longer than the test: each force_flush is one export.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    views = [View(instrument_type=Histogram, aggregation=ExponentialBucketHistogramAggregation())]
    return MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"host.name": "node-otel", "gen_ai.agent.id": agent}),
        views=views if exponential else (),
    )


def stats(url: str, token: str, metric: str, **scope: str) -> dict:
    params = {"metric": metric, "window": "1h", **scope}
    r = httpx.get(f"{url}/api/v1/stats", params=params, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def stored_everything() -> bool:
    return not PendingBatch.objects.exists()


@pytest.mark.parametrize(
    "delta, exponential", [(False, False), (True, True)], ids=["cumulative-explicit", "delta-exponential"]
)
def test_the_official_exporter_s_values_read_back_exactly(
    live_server_url, celery_worker, token, read_token, delta, exponential
):
    agent = f"agent-{'delta' if delta else 'cumulative'}"
    meters = provider(live_server_url, token, agent, delta, exponential)
    meter = meters.get_meter("tests")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    calls = meter.create_counter("agent.calls")
    rng = np.random.default_rng(3)
    latencies, used = [], 0
    for _ in range(3):
        values = rng.lognormal(0, 0.6, 300)
        for v in values:
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                     "gen_ai.request.model": "gpt-4o"}  # fmt: skip
            duration.record(float(v), attrs)
            tokens.record(120, {**attrs, "gen_ai.token.type": "input"})
            calls.add(1)
        latencies.extend(values * 1000)
        used += 120 * len(values)
        assert meters.force_flush()
    meters.shutdown()
    wait_until(stored_everything, what="the exports to be stored")

    llm = stats(live_server_url, read_token, "llm_call_ms", agent=agent, **{"tag.model": "gpt-4o"})
    assert llm["count"] == len(latencies)
    assert llm["sum"] == pytest.approx(sum(latencies), rel=1e-9)
    assert llm["max"] == pytest.approx(max(latencies), rel=1e-9)
    assert stats(live_server_url, read_token, "tokens_total", agent=agent)["sum"] == used
    assert stats(live_server_url, read_token, "agent.calls_total", agent=agent)["sum"] == len(latencies)


def post(url: str, token: str | None, body: bytes, kind: str = wire.PROTOBUF, **headers) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/v1/metrics", content=body, headers={"Content-Type": kind, **auth, **headers})


def one_export(kind: str = wire.PROTOBUF) -> bytes:
    sdk = Sdk("delta", **{"gen_ai.agent.id": "agent-retry"})
    sdk.meter.create_counter("retried").add(5)
    return sdk.collect(kind)


def test_a_retried_export_is_stored_once(live_server_url, celery_worker, token, read_token):
    body = one_export()
    for _ in range(2):
        r = post(live_server_url, token, body)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == wire.PROTOBUF
        assert ExportMetricsServiceResponse.FromString(r.content) == ExportMetricsServiceResponse()
    wait_until(lambda: IngestedBatch.objects.exists() and stored_everything(), what="the export")
    assert stats(live_server_url, read_token, "retried_total")["sum"] == 5


def test_json_is_answered_in_json_with_the_points_refused(live_server_url, celery_worker, token):
    sdk = Sdk("delta")
    sdk.meter.create_gauge("temperature").set(20.0)
    sdk.meter.create_gauge("pressure").set(3.0)
    request = wire.decode(sdk.collect(), wire.PROTOBUF)
    # The SDK refuses NaN itself; another sender may not.
    request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = float("nan")
    body = gzip.compress(wire.encode(request, wire.JSON))
    r = post(live_server_url, token, body, wire.JSON, **{"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == wire.JSON
    partial = r.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == "1"
    assert "temperature" in partial["errorMessage"] and "finite" in partial["errorMessage"]
    wait_until(lambda: IngestedBatch.objects.exists() and stored_everything(), what="the pressure")


@pytest.mark.parametrize(
    "headers, body, status",
    [
        ({"Authorization": ""}, None, 401),
        ({"Authorization": "Bearer pd_not_a_token"}, None, 401),
        ({"Content-Type": "text/plain"}, None, 415),
        ({"Content-Encoding": "br"}, None, 415),
        ({}, b"\xff\xff\xff garbage", 400),
        ({"Content-Encoding": "gzip"}, b"not gzip", 400),
        ({"Content-Encoding": "gzip"}, gzip.compress(b"\0" * (11 * 1024 * 1024)), 413),
    ],
    ids=["no-token", "bad-token", "content-type", "encoding", "garbage", "bad-gzip", "gzip-bomb"],
)
def test_bad_exports_are_answered_with_a_status(live_server_url, token, headers, body, status):
    r = post(live_server_url, token, one_export() if body is None else body, **headers)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] in (wire.PROTOBUF, wire.JSON)
    if r.headers["Content-Type"] == wire.PROTOBUF:
        assert Status.FromString(r.content).message


def test_only_post_is_answered(live_server_url):
    r = httpx.get(f"{live_server_url}/v1/metrics")
    assert (r.status_code, r.headers["Allow"]) == (405, "POST")
