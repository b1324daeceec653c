"""The ingest protocol: the server and the node collector refuse the same points, naming the
same field, because both take their rules from collectors/protocol.py."""

from __future__ import annotations

import json
import time

import pytest
from django.conf import settings

from collectors import protocol
from collectors.agent.local_ingest import parse_body
from collectors.protocol import DEFAULT_LIMITS, ProtocolError
from perfdash.ingest.validate import parse_batch
from perfdash.metrics.models import WELL_KNOWN_METRICS

NOW = time.time()


def good(**fields: object) -> dict:
    point = {
        "ts": NOW,
        "node": "node-1",
        "agent": "agent-1",
        "metric": "tool_execution_ms",
        "value": 812.4,
        "tags": {"tool": "web_search"},
        **fields,
    }
    return {k: v for k, v in point.items() if v is not ...}


def refusal(parse, raw: bytes) -> tuple[int, int | None, str | None]:
    with pytest.raises(ProtocolError) as refused:
        parse(raw)
    return refused.value.status, refused.value.point, refused.value.field


def server(raw: bytes) -> object:
    return parse_batch(raw, DEFAULT_LIMITS, NOW)


def node_collector(raw: bytes) -> object:
    return parse_body(raw, NOW)


BAD_POINTS = [
    ({"value": float("nan")}, "value"),
    ({"value": float("inf")}, "value"),
    ({"value": 10**400}, "value"),
    ({"value": "12"}, "value"),
    ({"value": True}, "value"),
    ({"value": -3.0}, "value"),
    ({"value": None}, "value"),
    ({"value": ...}, "value"),
    ({"metric": ...}, "metric"),
    ({"metric": 7}, "metric"),
    ({"metric": "x" * 129}, "metric"),
    ({"metric": "tool execution"}, "metric"),
    ({"metric": "9lives_ms"}, "metric"),
    ({"metric": "tool_\ud800_ms"}, "metric"),
    ({"node": ...}, "node"),
    ({"node": ""}, "node"),
    ({"node": "n" * 129}, "node"),
    ({"node": "node\n1"}, "node"),
    ({"node": "node-\ud800"}, "node"),
    ({"agent": ["a"]}, "agent"),
    ({"agent": "agent-\udfff"}, "agent"),
    ({"ts": "yesterday"}, "ts"),
    ({"ts": "2026-11-28T10:00:00"}, "ts"),
    ({"ts": NOW + 3600}, "ts"),
    ({"ts": NOW - 91 * 86400}, "ts"),
    ({"ts": float("inf")}, "ts"),
    ({"ts": None}, "ts"),
    ({"ts": {}}, "ts"),
    ({"ts": True}, "ts"),
    ({"tags": "tool=web"}, "tags"),
    ({"tags": []}, "tags"),
    ({"tags": {"tool": 3}}, "tags.tool"),
    ({"tags": {"tool": ["a"]}}, "tags.tool"),
    ({"tags": {"tool": "web\ud800"}}, "tags.tool"),
    ({"tags": {"bad key": "x"}}, "tags.bad key"),
    ({"tags": {"k\ud800": "x"}}, r"tags.k\ud800"),
    ({"tags": {f"t{i}": "v" for i in range(17)}}, "tags"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(
    ("bad", "field"), BAD_POINTS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_POINTS)]
)
def test_the_server_and_the_node_collector_refuse_a_bad_point_naming_the_same_field(bad, field):
    raw = json.dumps({"points": [good(), good(), good(**bad)]}).encode()
    assert refusal(server, raw) == refusal(node_collector, raw) == (400, 2, field)


BAD_BODIES = [
    (b"{not json", 400, None),
    (b"[]", 400, None),
    (json.dumps({"points": "x"}).encode(), 400, "points"),
    (json.dumps({"points": []}).encode(), 400, "points"),
    (json.dumps({"points": [good()], "extra": 1}).encode(), 400, "extra"),
    (json.dumps({"batch_id": "", "points": [good()]}).encode(), 400, "batch_id"),
    (json.dumps({"batch_id": 7, "points": [good()]}).encode(), 400, "batch_id"),
    (json.dumps({"batch_id": "b\ud800", "points": [good()]}).encode(), 400, "batch_id"),
    (json.dumps({"points": [good()] * 10_001}).encode(), 413, "points"),
]


@pytest.mark.parametrize(("raw", "status", "field"), BAD_BODIES)
def test_the_server_and_the_node_collector_refuse_a_bad_body_alike(raw, status, field):
    assert refusal(server, raw) == refusal(node_collector, raw) == (status, None, field)


def test_a_point_that_is_not_an_object_is_named_by_its_index():
    raw = json.dumps({"points": [good(), 5]}).encode()
    assert refusal(server, raw) == refusal(node_collector, raw) == (400, 1, None)


def test_bytes_that_are_not_utf8_are_parsed_into_surrogates_so_the_checks_can_name_them():
    doc = protocol.loads(b'{"points": [{"node": "n\xffx"}]}')
    assert doc == {"points": [{"node": "n\udcffx"}]}
    with pytest.raises(ProtocolError) as refused:
        protocol.check_label(doc["points"][0]["node"], "node", 128)
    assert refused.value.field == "node" and "Unicode" in refused.value.message


def test_bodies_in_utf16_or_with_a_byte_order_mark_are_parsed_as_the_standard_library_does():
    body = {"points": [good()]}
    for raw in (json.dumps(body).encode("utf-16"), b"\xef\xbb\xbf" + json.dumps(body).encode()):
        assert protocol.loads(raw) == body


def test_an_error_that_quotes_what_is_not_unicode_is_itself_valid_unicode():
    error = ProtocolError("tags.k\ud800 is bad", point=3, field="tags.k\ud800")
    assert error.as_json() == {"error": r"tags.k\ud800 is bad", "point": 3, "field": r"tags.k\ud800"}
    json.dumps(error.as_json(), ensure_ascii=False).encode("utf-8")


def test_the_protocols_default_limits_are_the_servers_default_settings():
    assert (
        DEFAULT_LIMITS.max_points,
        DEFAULT_LIMITS.max_tags,
        DEFAULT_LIMITS.max_name,
        DEFAULT_LIMITS.max_body,
        DEFAULT_LIMITS.max_future_s,
        DEFAULT_LIMITS.max_age_s,
    ) == (
        settings.INGEST_MAX_POINTS,
        settings.INGEST_MAX_TAGS,
        settings.INGEST_MAX_NAME_LENGTH,
        settings.INGEST_MAX_BODY_BYTES,
        settings.INGEST_MAX_FUTURE_SECONDS,
        settings.ROLLUP_RETENTION_DAYS * 86400,
    )


def test_the_well_known_metrics_are_the_protocols():
    assert WELL_KNOWN_METRICS is protocol.WELL_KNOWN_METRICS
    for metric, kind in WELL_KNOWN_METRICS.items():
        assert kind in ("latency", "gauge", "counter")
        assert metric.endswith(protocol.COUNTER_SUFFIX) == (kind == "counter")
        assert metric.endswith(protocol.LATENCY_SUFFIX) == (kind == "latency")
