"""OTLP exports of the OpenTelemetry SDK, received and stored in process: counts and sums read
back exactly, percentiles within the stated error, over several export intervals."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.metrics import query, sketch
from perfdash.metrics.scope import Scope
from perfdash.otlp import models, wire
from tests.otlp.conftest import Sdk, store

# The bounds the GenAI conventions advise for durations in seconds.
GENAI_BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]


@pytest.fixture
def token_id(db) -> int:
    return ApiToken.issue("otel", ["ingest"])[0].id


def export_intervals(sdk: Sdk, token_id: int, kind: str, intervals: int = 3, per_interval: int = 400):
    """Record lognormal latencies (seconds) over several export intervals; the values in ms
    and the coarsest exponential scale any export used."""
    hist = sdk.meter.create_histogram(
        "http.client.request.duration", unit="s", explicit_bucket_boundaries_advisory=GENAI_BOUNDS
    )
    rng = np.random.default_rng(1)
    recorded, scales = [], []
    for _ in range(intervals):
        values = rng.lognormal(-1, 0.8, per_interval)
        for v in values:
            hist.record(float(v), {"http.request.method": "GET"})
        recorded.extend(values * 1000)
        body = sdk.collect()
        for rm in wire.decode(body, wire.PROTOBUF).resource_metrics:
            for dp in rm.scope_metrics[0].metrics[0].exponential_histogram.data_points:
                scales.append(dp.scale)
        if kind == wire.JSON:
            body = wire.encode(wire.decode(body, wire.PROTOBUF), wire.JSON)
        store(token_id, body, kind)
    return np.sort(recorded), min(scales, default=None)


def bucket_of(value: float, scale: int | None) -> tuple[float, float]:
    """The sender's bucket (lower, upper] holding `value` ms."""
    if scale is None:
        edges = [0.0, *(b * 1000 for b in GENAI_BOUNDS), math.inf]
        i = int(np.searchsorted(edges, value, side="left"))
        return edges[i - 1], edges[i]
    base = 2.0 ** (2.0**-scale)
    # Buckets are in seconds; a value v lies in (base^i, base^(i+1)].
    i = math.ceil(math.log(value / 1000, base)) - 1
    return base**i * 1000, base ** (i + 1) * 1000


@pytest.mark.parametrize("kind", [wire.PROTOBUF, wire.JSON], ids=["protobuf", "json"])
@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
@pytest.mark.parametrize("exponential", [False, True], ids=["explicit", "exponential"])
def test_histograms_read_back_exact_counts_and_sums_and_percentiles_within_the_buckets(
    token_id, kind, temporality, exponential
):
    sdk = Sdk(temporality, exponential)
    recorded, scale = export_intervals(sdk, token_id, kind)
    got = query.stats("http.client.request.duration_ms", 3600, Scope(agent="agent-1"))
    assert got["count"] == len(recorded)
    assert got["sum"] == pytest.approx(recorded.sum(), rel=1e-9)
    assert got["min"] == pytest.approx(recorded[0], rel=1e-9)
    assert got["max"] == pytest.approx(recorded[-1], rel=1e-9)
    for name, q in sketch.PERCENTILES.items():
        # percentile_cont interpolates between two ranks: the answer lies between the lower
        # bound of the first's bucket and the upper bound of the second's, give or take ALPHA.
        rank = q * (len(recorded) - 1)
        lower = bucket_of(recorded[math.floor(rank)], scale)[0]
        upper = bucket_of(recorded[math.ceil(rank)], scale)[1]
        assert lower * (1 - sketch.ALPHA) <= got[name] <= upper * (1 + sketch.ALPHA), name
        if exponential:
            exact = float(np.quantile(recorded, q))
            width = 2.0 ** (2.0**-scale) - 1
            assert abs(got[name] - exact) <= (width + sketch.ALPHA) * exact, name


def test_metrics_fed_by_explicit_buckets_say_how_precise_their_percentiles_are(token_id):
    today = datetime.now(UTC).date()
    export_intervals(Sdk(), token_id, wire.PROTOBUF, intervals=1, per_interval=5)
    assert models.precision("http.client.request.duration_ms", today) == models.PRECISION
    assert models.precision("http.client.request.duration_ms", today + timedelta(days=1)) is None
    sdk = Sdk(exponential=True)
    sdk.meter.create_histogram("rpc.duration", unit="ms").record(3.0)
    store(token_id, sdk.collect())
    assert models.precision("rpc.duration_ms", today) is None
