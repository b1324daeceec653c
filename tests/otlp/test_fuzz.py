"""Truncated and garbled OTLP bodies, protobuf and JSON: each is either read (what can be read
of it translated, the rest refused data point by data point) or refused with WireError, a
400. Nothing else escapes."""

from __future__ import annotations

import random
import time

import pytest

from perfdash.ingest.validate import Limits
from perfdash.otlp import assemble, temporality, wire
from perfdash.otlp.receive import identity
from perfdash.otlp.translate import Translator
from tests.otlp.conftest import Sdk


def a_rich_export(kind: str) -> bytes:
    sdk = Sdk("delta")
    m = sdk.meter
    m.create_histogram("gen_ai.client.operation.duration", unit="s").record(
        0.5, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "error.type": "timeout"}
    )
    m.create_counter("calls").add(3, {"route": "/a"})
    m.create_up_down_counter("queue").add(-2)
    m.create_gauge("memory", unit="By").set(1234)
    exp = Sdk("cumulative", exponential=True)
    exp.meter.create_histogram("latency", unit="ms").record(12.5)
    request = wire.decode(sdk.collect(), wire.PROTOBUF)
    request.resource_metrics.extend(wire.decode(exp.collect(), wire.PROTOBUF).resource_metrics)
    return wire.encode(request, kind)


def mutations(body: bytes, seed: int, n: int) -> list[bytes]:
    rnd = random.Random(seed)
    out = [body[:i] for i in range(0, len(body), max(1, len(body) // 60))]
    for _ in range(n):
        b = bytearray(body)
        for _ in range(rnd.randint(1, 6)):
            i = rnd.randrange(len(b))
            b[i] = rnd.choice([rnd.randrange(256), 0, 0xFF, ord('"'), ord("{"), ord("9")])
        out.append(bytes(b))
    return out


@pytest.mark.parametrize("kind", [wire.PROTOBUF, wire.JSON], ids=["protobuf", "json"])
def test_garbled_bodies_are_read_or_refused_never_anything_else(kind):
    body = a_rich_export(kind)
    read = refused = 0
    for variant in mutations(body, seed=len(kind), n=400):
        try:
            request = wire.decode(variant, kind)
        except wire.WireError as exc:
            assert exc.status == 400
            refused += 1
            continue
        translator = Translator(1, identity(), Limits(), ("tool", "model"), time.time())
        points = translator.request(request)
        if len(points):
            assemble.batch("fuzz", points, temporality.as_sent(points))
        read += 1
    assert read and refused


def test_json_exemplars_with_hex_trace_ids_are_read():
    # OTLP/JSON writes trace and span ids in hex, where protobuf's JSON expects base64.
    exemplar = b'{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "asInt": "1"}'
    body = a_rich_export(wire.JSON)
    assert b'"asInt"' in body
    body = body.replace(b'"asInt"', b'"exemplars": [' + exemplar + b'], "asInt"', 1)
    assert wire.decode(body, wire.JSON).resource_metrics


def test_json_may_use_numbers_or_strings_for_64_bit_integers_and_numbers_for_enums():
    body = (
        b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "n", "sum": {"isMonotonic": true, '
        b'"aggregationTemporality": 1, "dataPoints": [{"asInt": "7", "timeUnixNano": 1700000000000000000}, '
        b'{"asInt": 8, "timeUnixNano": "1700000000000000000"}]}}]}]}]}'
    )
    request = wire.decode(body, wire.JSON)
    points = request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points
    assert [p.as_int for p in points] == [7, 8]
