"""Every kind of bad input gets a precise 4xx JSON error, and nothing of the batch is stored."""

from __future__ import annotations

import gzip
import time

import orjson
import pytest
from django.db import connection

from perfdash.api.models import ApiToken

URL = "/api/v1/ingest"


class RawJSON(str):
    """A literal written into the JSON as is (NaN, Infinity, huge numbers), as some clients do."""


def encode(body: dict) -> bytes:
    literals = []

    def default(obj):
        if isinstance(obj, RawJSON):
            literals.append(str(obj))
            return f"@@raw{len(literals) - 1}@@"
        raise TypeError

    text = orjson.dumps(body, default=default, option=orjson.OPT_PASSTHROUGH_SUBCLASS).decode()
    for i, lit in enumerate(literals):
        text = text.replace(f'"@@raw{i}@@"', lit)
    return text.encode()


def point(**over) -> dict:
    p = {
        "ts": time.time(),
        "node": "node-1",
        "agent": "agent-1",
        "metric": "tool_execution_ms",
        "value": 812.4,
        "tags": {"tool": "web_search"},
    }
    p.update(over)
    return {k: v for k, v in p.items() if v is not ...}


def post(client, token: str, body, content_type: str = "application/json", **headers):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        URL, data=data, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}", **headers
    )


def stored_points() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics_point")
        return cur.fetchone()[0]


def assert_error(response, status: int, point: int | None = None, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]
    if point is not None:
        assert body["point"] == point
    if field is not None:
        assert body["field"] == field
    assert stored_points() == 0
    return body


@pytest.mark.parametrize(
    "bad, field, words",
    [
        ({"value": RawJSON("NaN")}, "value", "finite"),
        ({"value": RawJSON("Infinity")}, "value", "finite"),
        ({"value": RawJSON("-Infinity")}, "value", "finite"),
        ({"value": "12"}, "value", "number"),
        ({"value": True}, "value", "number"),
        ({"value": RawJSON("1" + "0" * 400)}, "value", "finite"),
        ({"value": -3.0}, "value", "negative"),
        ({"value": ...}, "value", "missing"),
        ({"metric": ...}, "metric", "missing"),
        ({"node": ...}, "node", "missing"),
        ({"agent": ...}, "agent", "missing"),
        ({"ts": ...}, "ts", "missing"),
        ({"metric": 7}, "metric", "string"),
        ({"agent": ["a"]}, "agent", "string"),
        ({"metric": "x" * 129}, "metric", "128"),
        ({"agent": "a" * 129}, "agent", "128"),
        ({"metric": "tool execution"}, "metric", "letters"),
        ({"metric": "9lives_ms"}, "metric", "digit"),
        ({"node": "node\n1"}, "node", "control"),
        ({"agent": ""}, "agent", "1 to 128"),
        ({"ts": "yesterday"}, "ts", "RFC 3339"),
        ({"ts": "2026-11-28T10:00:00"}, "ts", "time zone"),
        ({"ts": time.time() + 3600}, "ts", "future"),
        ({"ts": time.time() - 91 * 86400}, "ts", "retention"),
        ({"ts": None}, "ts", "missing"),
        ({"ts": {}}, "ts", "Unix seconds"),
        ({"tags": "tool=web"}, "tags", "object"),
        ({"tags": {"tool": 3}}, "tags.tool", "string"),
        ({"tags": {"bad key": "x"}}, "tags.bad key", "letters"),
        ({"tags": {f"t{i}": "v" for i in range(17)}}, "tags", "too many tags"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"tags": {"tool": ["a"]}}, "tags.tool", "string"),
        ({"metric": {"a": 1}}, "metric", "string"),
    ],
)
def test_it_rejects_a_bad_point_and_says_where(client, ingest_token, bad, field, words):
    body = assert_error(
        post(client, ingest_token, encode({"points": [point(), point(**bad)]})), 400, point=1, field=field
    )
    assert words.lower() in body["error"].lower()


def test_it_rejects_malformed_json(client, ingest_token):
    body = assert_error(post(client, ingest_token, b'{"points": [1,'), 400)
    assert "malformed JSON" in body["error"]


@pytest.mark.parametrize("body", [[], {"points": "x"}, {"points": []}, {"points": [], "extra": 1}, {}])
def test_it_rejects_a_body_without_a_points_list(client, ingest_token, body):
    assert_error(post(client, ingest_token, body), 400)


def test_it_rejects_a_point_that_is_not_an_object(client, ingest_token):
    assert_error(post(client, ingest_token, {"points": [point(), 5]}), 400, point=1)


def test_it_rejects_a_bad_batch_id(client, ingest_token):
    assert_error(post(client, ingest_token, {"batch_id": 12, "points": [point()]}), 400, field="batch_id")
    assert_error(
        post(client, ingest_token, {"batch_id": "x" * 129, "points": [point()]}), 400, field="batch_id"
    )


def test_it_rejects_too_many_points(client, ingest_token, settings):
    settings.INGEST_MAX_POINTS = 5
    assert_error(post(client, ingest_token, {"points": [point()] * 6}), 413, field="points")


def test_it_rejects_a_wrong_content_type(client, ingest_token):
    assert_error(post(client, ingest_token, {"points": [point()]}, content_type="text/plain"), 415)


def test_it_rejects_an_unknown_content_encoding(client, ingest_token):
    assert_error(post(client, ingest_token, {"points": [point()]}, HTTP_CONTENT_ENCODING="br"), 415)


def test_it_rejects_a_body_over_the_size_limit(client, ingest_token, settings):
    settings.INGEST_MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = orjson.dumps({"points": [point()] * 20})
    assert_error(post(client, ingest_token, body), 413)


def test_it_rejects_a_gzip_bomb_without_inflating_it(client, ingest_token, settings):
    settings.INGEST_MAX_BODY_BYTES = 1_000_000
    bomb = gzip.compress(b'{"points": [' + b" " * 50_000_000 + b"]}")
    assert len(bomb) < 100_000
    body = assert_error(post(client, ingest_token, bomb, HTTP_CONTENT_ENCODING="gzip"), 413)
    assert "decompressed" in body["error"]


def test_it_rejects_a_body_that_is_not_gzip(client, ingest_token):
    body = assert_error(post(client, ingest_token, b"not gzip", HTTP_CONTENT_ENCODING="gzip"), 400)
    assert "gzip" in body["error"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer pd_wrong", "Basic abc", "pd_x"])
def test_it_refuses_a_missing_or_wrong_token(client, db, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    r = client.post(URL, data=orjson.dumps({"points": [point()]}), content_type="application/json", **extra)
    assert r.status_code == 401
    assert r["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["error"]


def test_it_refuses_a_revoked_token(client, db):
    token, raw = ApiToken.issue("old", ["ingest"])
    token.revoke()
    assert_error(post(client, raw, {"points": [point()]}), 401)


def test_it_refuses_a_read_only_token(client, read_token):
    assert_error(post(client, read_token, {"points": [point()]}), 401)


def test_it_answers_get_with_405(client, ingest_token):
    r = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert r.status_code == 405
    assert r.json()["error"]


def test_a_rejected_batch_stores_nothing_even_when_most_points_are_good(client, ingest_token):
    points = [point() for _ in range(500)] + [point(value=-1.0)]
    assert_error(post(client, ingest_token, {"points": points}), 400, point=500, field="value")


@pytest.mark.parametrize("tags", [[], "", 0, False])
def test_tags_that_are_not_an_object_are_rejected_even_for_a_series_seen_before(client, ingest_token, tags):
    body = {"points": [point(tags=...), point(tags=tags)]}  # the first point: same series, no tags
    assert_error(post(client, ingest_token, encode(body)), 400, point=1, field="tags")


NOT_UNICODE = {
    "escaped lone surrogate": rb"\ud800",
    "escaped pair in the wrong order": rb"\ude00\ud83d",
    "byte that is never UTF-8": b"\xff",
    "surrogate encoded as UTF-8": b"\xed\xa0\x80",
    "overlong encoding": b"\xc0\x80",
}


def with_bytes(body: dict, raw: bytes) -> bytes:
    """The body as JSON, with each string "@" replaced by `raw` between an x and a y."""
    return orjson.dumps(body).replace(b'"@"', b'"x' + raw + b'y"')


@pytest.mark.parametrize("raw", NOT_UNICODE.values(), ids=NOT_UNICODE.keys())
@pytest.mark.parametrize(
    "bad, field",
    [
        ({"node": "@"}, "node"),
        ({"agent": "@"}, "agent"),
        ({"metric": "@"}, "metric"),
        ({"tags": {"tool": "@"}}, "tags.tool"),
        ({"tags": {"@": "web"}}, "tags."),
    ],
    ids=["node", "agent", "metric", "tag value", "tag key"],
)
def test_it_rejects_a_string_that_is_not_unicode_and_says_where(client, ingest_token, raw, bad, field):
    response = post(client, ingest_token, with_bytes({"points": [point(), point(**bad)]}, raw))
    assert response.status_code == 400, response.content
    body = orjson.loads(response.content)  # strict: the answer itself is valid Unicode
    assert body["point"] == 1 and body["field"].startswith(field) and body["error"]
    assert stored_points() == 0


@pytest.mark.parametrize("raw", NOT_UNICODE.values(), ids=NOT_UNICODE.keys())
def test_it_rejects_a_batch_id_that_is_not_unicode(client, ingest_token, raw):
    response = post(client, ingest_token, with_bytes({"batch_id": "@", "points": [point()]}, raw))
    assert response.status_code == 400, response.content
    assert orjson.loads(response.content)["field"] == "batch_id"
    assert stored_points() == 0


def test_a_tag_key_that_is_not_unicode_is_named_as_escapes(client, ingest_token):
    response = post(client, ingest_token, with_bytes({"points": [point(tags={"@": "web"})]}, rb"\ud800"))
    assert orjson.loads(response.content)["field"] == r"tags.x\ud800y"
