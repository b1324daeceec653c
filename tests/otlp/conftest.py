"""The OTLP tests' world: an OpenTelemetry SDK meter whose exports are taken in process (an
in-memory reader, encoded as the OTLP exporter encodes them), and the way to read them back."""

from __future__ import annotations

import time

import numpy as np
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableGauge, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.ingest.validate import Limits
from perfdash.otlp import models, wire
from perfdash.otlp import receive as receiving

DELTA = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableGauge: AggregationTemporality.CUMULATIVE,
}


class Sdk:
    """A meter provider for one fleet member, read on demand: each `collect` is one export."""

    def __init__(self, temporality: str | dict = "cumulative", exponential: bool = False, **resource: str):
        # "delta": the SDKs' delta preference (up-down counters stay cumulative); or a dict of
        # instrument -> temporality.
        preferred = temporality if isinstance(temporality, dict) else None
        if temporality == "delta":
            preferred = DELTA
        self.reader = InMemoryMetricReader(preferred_temporality=preferred)
        views = [View(instrument_type=Histogram, aggregation=ExponentialBucketHistogramAggregation())]
        self.provider = MeterProvider(
            metric_readers=[self.reader],
            resource=Resource.create({"host.name": "node-1", "gen_ai.agent.id": "agent-1", **resource}),
            views=views if exponential else (),
        )
        self.meter = self.provider.get_meter("tests")

    def collect(self, kind: str = wire.PROTOBUF) -> bytes:
        request = encode_metrics(self.reader.get_metrics_data())
        return wire.encode(request, kind)


def store(token_id: int, body: bytes, kind: str = wire.PROTOBUF, now: float | None = None):
    """Receive an export and store its batch as the worker does; the report."""
    now = time.time() if now is None else now
    report, batch = receiving.receive(token_id, body, kind, Limits(), now)
    if batch is not None and len(batch):
        IngestedBatch.store(token_id, batch, now=now)
    return report


def exact_percentile(values, q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


@pytest.fixture
def json_of():
    return lambda body: json_format.MessageToJson(wire.decode(body, wire.PROTOBUF)).encode()


@pytest.fixture
def token(transactional_db, clean_tables) -> str:
    return ApiToken.issue("otel-collector", ["ingest"])[1]


@pytest.fixture(autouse=True)
def fresh_otlp_caches() -> None:
    # Metrics noted inside a rolled-back test transaction must not be remembered.
    models.forget()
