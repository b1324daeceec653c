"""The node collector passes OTLP exports posted to its loopback port, without a token, on to
perfdash with its own token."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from perfdash.ingest.models import IngestedBatch, PendingBatch
from perfdash.otlp import wire
from tests.collectors.test_agent import start_agent, stop_agent
from tests.conftest import free_port, wait_until
from tests.otlp.conftest import Sdk

pytestmark = pytest.mark.slow


def test_exports_to_the_node_collector_reach_perfdash(
    live_server_url, celery_worker, token, read_token, tmp_path
):
    agent, _, http_port = start_agent(tmp_path, live_server_url, token, "node-otlp")
    try:
        exporter = OTLPMetricExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/metrics")  # no token
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        resource = Resource.create({"host.name": "node-otlp", "gen_ai.agent.id": "local-agent"})
        meters = MeterProvider(metric_readers=[reader], resource=resource)
        tools = meters.get_meter("tests").create_histogram("gen_ai.execute_tool.duration", unit="s")
        for v in (0.1, 0.2, 0.4):
            tools.record(v, {"gen_ai.tool.name": "web_search"})
        assert meters.force_flush()
        meters.shutdown()
    finally:
        output = stop_agent(agent)
    assert "2 OTLP exports passed on (0 not)" in output  # force_flush, then shutdown
    wait_until(
        lambda: IngestedBatch.objects.exists() and not PendingBatch.objects.exists(), what="the export"
    )
    r = httpx.get(
        f"{live_server_url}/api/v1/stats",
        params={"metric": "tool_execution_ms", "agent": "local-agent", "tag.tool": "web_search"},
        headers={"Authorization": f"Bearer {read_token}"},
    )
    assert (r.json()["count"], r.json()["sum"]) == (3, pytest.approx(700.0))


def test_the_node_collector_answers_503_while_perfdash_is_unreachable(token, tmp_path):
    agent, _, http_port = start_agent(tmp_path, f"http://127.0.0.1:{free_port()}", token, "node-away")
    try:
        sdk = Sdk("delta")
        sdk.meter.create_counter("c").add(1)
        r = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/metrics",
            content=sdk.collect(),
            headers={"Content-Type": wire.PROTOBUF},
        )
    finally:
        stop_agent(agent)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "unreachable" in wire.status(0, "").FromString(r.content).message
