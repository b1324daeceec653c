"""Whatever a client sends, validation answers with a Batch that can be stored or a 4xx
ProtocolError — nothing that would become a 500 — and the node collector's local ingest
refuses what the server refuses."""

from __future__ import annotations

import copy
import json
import random
import time

import orjson
import pytest

from collectors.agent.local_ingest import parse_body
from perfdash.ingest.validate import Limits, ProtocolError, decode_body, parse_batch
from perfdash.metrics.models import Series

LIMITS = Limits(
    max_points=50, max_tags=16, max_name=128, max_body=100_000, max_future_s=600, max_age_s=90 * 86400
)
WEIRD = [
    None,
    True,
    False,
    0,
    -1,
    1e308,
    -1e308,
    10**30,
    1.5,
    "",
    "x" * 200,
    "a\x00b",
    "<script>",
    [],
    [1],
    {},
    {"a": {"b": []}},
    "2026-11-28T10:00:00Z",
    "2026-13-45T99:00:00Z",
    "NaN",
    "\ud800",
    "a\udfffb",
]
# What a string may hold that is not Unicode: escapes of unpaired surrogates, and bytes that
# are not UTF-8 (never used, overlong, truncated, an encoded surrogate, beyond U+10FFFF).
NOT_UNICODE = [
    rb"\ud800",
    rb"\udfff",
    rb"\udc00\ud800",
    rb"\ud83d",
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xc0\x80",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
]


def weird(rnd: random.Random):
    return copy.deepcopy(rnd.choice(WEIRD))


def valid_body() -> dict:
    return {
        "batch_id": "b",
        "points": [
            {
                "ts": time.time(),
                "node": "n1",
                "agent": f"a{i}",
                "metric": "tool_execution_ms",
                "value": 10.0 + i,
                "tags": {"tool": "web"},
            }
            for i in range(5)
        ],
    }


def mutate(rnd: random.Random, obj, depth: int = 0):
    if isinstance(obj, dict) and obj and rnd.random() < 0.7:
        key = rnd.choice(list(obj))
        choice = rnd.random()
        if choice < 0.2:
            del obj[key]
        elif choice < 0.3:
            obj[rnd.choice(["extra", "tags", "ts", "points", "batch_id", "Metric"])] = weird(rnd)
        else:
            obj[key] = mutate(rnd, obj[key], depth + 1) if depth < 4 else weird(rnd)
        return obj
    if isinstance(obj, list) and obj and rnd.random() < 0.7:
        i = rnd.randrange(len(obj))
        if rnd.random() < 0.2:
            obj.append(weird(rnd))
        else:
            obj[i] = mutate(rnd, obj[i], depth + 1)
        return obj
    return weird(rnd)


def encode(rnd: random.Random, body) -> bytes:
    text = json.dumps(body, allow_nan=True)
    if rnd.random() < 0.2 and text:  # damage the text itself
        i = rnd.randrange(len(text))
        text = (
            text[:i]
            + rnd.choice(["", "{", "]", '"', "\\", "NaN", "Infinity", "1e999", "\x00"])
            + text[i + 1 :]
        )
    raw = text.encode("utf-8", "surrogatepass")
    if rnd.random() < 0.1:  # bytes that are not UTF-8, anywhere
        i = rnd.randrange(len(raw) + 1)
        raw = raw[:i] + rnd.choice(NOT_UNICODE) + raw[i:]
    return raw


@pytest.mark.parametrize("seed", range(8))
def test_no_input_escapes_as_anything_but_a_4xx(seed):
    rnd = random.Random(seed)
    outcomes = {"ok": 0, "rejected": 0}
    for _ in range(400):
        body = valid_body()
        for _ in range(rnd.randint(1, 4)):
            body = mutate(rnd, body)
        raw = encode(rnd, body)
        try:
            batch = parse_batch(decode_body(raw, "application/json", "", LIMITS), LIMITS, time.time())
            orjson.dumps([batch.batch_id, batch.series])  # strict: what is accepted can be stored
            outcomes["ok"] += 1
        except ProtocolError as exc:
            assert 400 <= exc.status < 500 and exc.message
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 100  # the fuzzer really produces bad input


def not_unicode(rnd: random.Random) -> bytes:
    """Text that is not valid Unicode, somewhere in a string that may be otherwise fine."""
    around = ["", "a", "web_search", "é"]
    return f"{rnd.choice(around)}@{rnd.choice(around)}".encode().replace(b"@", rnd.choice(NOT_UNICODE))


def with_invalid_unicode(rnd: random.Random) -> tuple[bytes, int | None, str]:
    """A valid body but for one string field of one point (or the batch id): the body, and
    the point and the start of the field that must be named."""
    body = valid_body()
    i = rnd.randrange(len(body["points"]))
    p = body["points"][i]
    field = rnd.choice(["batch_id", "node", "agent", "metric", "tag key", "tag value"])
    if field == "batch_id":
        body["batch_id"] = "@@bad@@"
    elif field == "tag key":
        p["tags"] = {"@@bad@@": "web"}
    elif field == "tag value":
        p["tags"] = {"tool": "@@bad@@"}
    else:
        p[field] = "@@bad@@"
    raw = json.dumps(body).encode().replace(b"@@bad@@", not_unicode(rnd))
    named = {"batch_id": "batch_id", "tag key": "tags.", "tag value": "tags.tool"}.get(field, field)
    return raw, None if field == "batch_id" else i, named


def server(raw: bytes, now: float) -> object:
    return parse_batch(decode_body(raw, "application/json", "", LIMITS), LIMITS, now)


@pytest.mark.parametrize("parse", [server, parse_body], ids=["server", "node collector"])
@pytest.mark.parametrize("seed", range(4))
def test_invalid_unicode_in_any_string_is_a_400_naming_the_point_and_field(parse, seed):
    rnd = random.Random(seed)
    for _ in range(150):
        raw, point, field = with_invalid_unicode(rnd)
        with pytest.raises(ProtocolError) as refused:
            parse(raw, time.time())
        exc = refused.value
        assert (exc.status, exc.point) == (400, point), (raw, exc.as_json())
        assert exc.field.startswith(field), (raw, exc.as_json())
        orjson.dumps(exc.as_json())  # strict: the answer itself is valid Unicode


@pytest.mark.parametrize("seed", range(2))
def test_invalid_unicode_posted_to_the_api_is_a_400_and_stores_nothing(client, ingest_token, seed):
    rnd = random.Random(seed)
    for _ in range(40):
        raw, point, field = with_invalid_unicode(rnd)
        response = client.post(
            "/api/v1/ingest",
            data=raw,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {ingest_token}",
        )
        assert response.status_code == 400, (raw, response.content)
        answer = orjson.loads(response.content)
        assert answer.get("point") == point and answer["field"].startswith(field)
    assert not Series.objects.exists()
