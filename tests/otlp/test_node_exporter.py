"""A second implementation: Node's @opentelemetry/exporter-metrics-otlp-http (OTLP/JSON over
HTTP, cumulative), installed from npm for the test, exports to perfdash over several
intervals; the counts and sums read back exactly."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import numpy as np
import pytest

from perfdash.ingest.models import IngestedBatch, PendingBatch
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

PACKAGES = [
    "@opentelemetry/api@1.10.0",
    "@opentelemetry/sdk-metrics@3.1.1",
    "@opentelemetry/resources@3.1.1",
    "@opentelemetry/exporter-metrics-otlp-http@0.301.2",
]

SCRIPT = """
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const [url, token, intervalsJson] = process.argv.slice(2);
const reader = new PeriodicExportingMetricReader({
  exporter: new OTLPMetricExporter({ url, headers: { Authorization: `Bearer ${token}` } }),
  exportIntervalMillis: 3600000,
});
const provider = new MeterProvider({
  resource: resourceFromAttributes({ 'host.name': 'node-js', 'gen_ai.agent.id': 'js-agent' }),
  readers: [reader],
});
const meter = provider.getMeter('perfdash-test');
const duration = meter.createHistogram('gen_ai.client.operation.duration', { unit: 's' });
const tokens = meter.createCounter('tokens.used');
(async () => {
  for (const values of JSON.parse(intervalsJson)) {
    for (const v of values) {
      duration.record(v, { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'web_search' });
      tokens.add(10);
    }
    await reader.forceFlush();
  }
  await provider.shutdown();
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="session")
def node_exporter(tmp_path_factory) -> str:
    """A directory with the exporter installed and the script, or a skip saying why not."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed to test with the Node.js exporter")
    where = tmp_path_factory.mktemp("node-otel")
    (where / "package.json").write_text('{"private": true}')
    installed = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", *PACKAGES],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if installed.returncode:
        pytest.skip(f"npm could not install the Node.js exporter: {installed.stderr[-300:]}")
    (where / "export.js").write_text(SCRIPT)
    return str(where)


def test_the_node_js_exporter_s_values_read_back_exactly(
    node_exporter, live_server_url, celery_worker, token, read_token
):
    rng = np.random.default_rng(8)
    intervals = [np.round(rng.lognormal(-2, 0.5, 50), 6).tolist() for _ in range(3)]
    run = subprocess.run(
        ["node", "export.js", f"{live_server_url}/v1/metrics", token, json.dumps(intervals)],
        cwd=node_exporter,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    wait_until(
        lambda: IngestedBatch.objects.exists() and not PendingBatch.objects.exists(), what="the exports"
    )
    values = [v * 1000 for interval in intervals for v in interval]

    def stats(metric: str, **params) -> dict:
        r = httpx.get(
            f"{live_server_url}/api/v1/stats",
            params={"metric": metric, "agent": "js-agent", **params},
            headers={"Authorization": f"Bearer {read_token}"},
        )
        return r.json()

    tools = stats("tool_execution_ms", **{"tag.tool": "web_search"})
    assert tools["count"] == len(values)
    assert tools["sum"] == pytest.approx(sum(values), rel=1e-9)
    assert (tools["min"], tools["max"]) == (pytest.approx(min(values)), pytest.approx(max(values)))
    assert stats("tokens.used_total")["sum"] == 10 * len(values)
