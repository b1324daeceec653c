"""Events API: POST /api/v1/events stores one event (201 with its id) or answers a precise 4xx
and stores nothing; GET /api/v1/events lists a window's events, newest first."""

from __future__ import annotations

import gzip
import json
import random
import time
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from django.contrib.auth.models import User

from perfdash.api.models import ApiToken
from perfdash.events.models import Event
from perfdash.lib.redis import client as redis_client
from perfdash.lib.redis import key as redis_key

URL = "/api/v1/events"


def post(client, token: str | None, body, content_type: str = "application/json", **headers):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(URL, data=data, content_type=content_type, **headers)


def deploy(**over) -> dict:
    body = {"kind": "deploy", "title": "v1.3.0", "tags": {"version": "1.3.0", "node": "node-2"}}
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


def assert_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = orjson.loads(response.content)  # strict: the answer itself is valid Unicode
    assert body["error"]
    if field is not None:
        assert body["field"] == field
    assert Event.objects.count() == 0
    return body


# --- POST --------------------------------------------------------------------------------------


def test_an_event_is_stored_with_the_token_that_sent_it(client, db):
    token, raw = ApiToken.issue("deployer", ["ingest"])
    before = time.time()
    r = post(client, raw, deploy())
    assert r.status_code == 201, r.content
    event = Event.objects.get()
    assert r.json() == {"id": event.id}
    assert (event.kind, event.title) == ("deploy", "v1.3.0")
    assert event.tags == {"version": "1.3.0", "node": "node-2"}
    assert event.token == token
    assert before - 1 <= event.ts.timestamp() <= time.time()  # no ts: now


def test_ts_is_rfc_3339_or_unix_seconds(client, ingest_token):
    an_hour_ago = datetime.now(UTC).replace(microsecond=250_000) - timedelta(hours=1)
    for ts in [
        an_hour_ago.isoformat().replace("+00:00", "Z"),
        an_hour_ago.astimezone(timezone(timedelta(hours=2))).isoformat(),
        an_hour_ago.timestamp(),
    ]:
        assert post(client, ingest_token, deploy(ts=ts)).status_code == 201
    assert [e.ts for e in Event.objects.all()] == [an_hour_ago] * 3


def test_a_gzip_body_without_tags_is_stored(client, ingest_token):
    body = gzip.compress(orjson.dumps({"kind": "note", "title": "load test starts"}))
    assert post(client, ingest_token, body, HTTP_CONTENT_ENCODING="gzip").status_code == 201
    assert Event.objects.get().tags == {}


@pytest.mark.parametrize(
    "bad, field, words",
    [
        ({"kind": ...}, "kind", "missing"),
        ({"kind": "party"}, "kind", "one of deploy, config, incident, note"),
        ({"kind": 3}, "kind", "one of"),
        ({"kind": ["deploy"]}, "kind", "one of"),
        ({"title": ...}, "title", "missing"),
        ({"title": ""}, "title", "1 to 200"),
        ({"title": "x" * 201}, "title", "1 to 200"),
        ({"title": 1.3}, "title", "string"),
        ({"title": "line\nbreak"}, "title", "control"),
        ({"tags": "version=1.3.0"}, "tags", "object"),
        ({"tags": ["version"]}, "tags", "object"),
        ({"tags": {"version": 130}}, "tags.version", "string"),
        ({"tags": {"bad key": "x"}}, "tags.bad key", "letters"),
        ({"tags": {"v": "x" * 129}}, "tags.v", "128"),
        ({"tags": {f"t{i}": "v" for i in range(17)}}, "tags", "too many tags"),
        ({"ts": "yesterday"}, "ts", "RFC 3339"),
        ({"ts": "2026-11-28T10:00:00"}, "ts", "time zone"),
        ({"ts": time.time() + 3600}, "ts", "future"),
        ({"ts": time.time() - 91 * 86400}, "ts", "retention"),
        ({"ts": True}, "ts", "Unix seconds"),
        ({"ts": {}}, "ts", "Unix seconds"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_input_gets_a_400_naming_the_field(client, ingest_token, bad, field, words):
    body = assert_error(post(client, ingest_token, deploy(**bad)), 400, field=field)
    assert words.lower() in body["error"].lower()


@pytest.mark.parametrize("body", [b'{"kind": "deploy",', b"[]", b'"deploy"', b" ", b"null"])
def test_a_body_that_is_not_a_json_object_gets_a_400(client, ingest_token, body):
    assert_error(post(client, ingest_token, body), 400)


@pytest.mark.parametrize("raw", [rb"\ud800", b"\xff", b"\xed\xa0\x80", b"\xc0\x80"])
@pytest.mark.parametrize(
    "doc, field", [(deploy(title="@"), "title"), (deploy(tags={"version": "@"}), "tags.version")]
)
def test_text_that_is_not_unicode_gets_a_400_naming_the_field(client, ingest_token, raw, doc, field):
    body = orjson.dumps(doc).replace(b'"@"', b'"x' + raw + b'y"')
    assert_error(post(client, ingest_token, body), 400, field=field)


def test_a_body_over_the_event_limit_gets_a_413(client, ingest_token):
    body = b'{"kind": "note", "title": "x"' + b" " * 70_000 + b"}"
    assert_error(post(client, ingest_token, body), 413)


def test_a_body_over_the_request_limit_gets_a_413(client, ingest_token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert_error(post(client, ingest_token, deploy(title="x" * 200, tags={"a": "y" * 1000})), 413)


def test_a_gzip_bomb_gets_a_413_without_being_inflated(client, ingest_token):
    bomb = gzip.compress(b'{"kind": "note", "title": "x"' + b" " * 20_000_000 + b"}")
    assert_error(post(client, ingest_token, bomb, HTTP_CONTENT_ENCODING="gzip"), 413)


def test_a_wrong_content_type_gets_a_415(client, ingest_token):
    assert_error(post(client, ingest_token, deploy(), content_type="text/plain"), 415)
    assert_error(post(client, ingest_token, deploy(), HTTP_CONTENT_ENCODING="br"), 415)


@pytest.mark.parametrize("header", [None, "Bearer pd_wrong", "Basic abc"])
def test_posting_needs_a_token(client, db, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    r = client.post(URL, data=orjson.dumps(deploy()), content_type="application/json", **extra)
    assert r.status_code == 401 and r["WWW-Authenticate"].startswith("Bearer")
    assert Event.objects.count() == 0


def test_posting_needs_the_ingest_scope_not_read_nor_a_session(client, read_token):
    assert_error(post(client, read_token, deploy()), 401)
    token, raw = ApiToken.issue("old", ["ingest"])
    token.revoke()
    assert_error(post(client, raw, deploy()), 401)
    client.force_login(User.objects.create_user("viewer", password="x" * 12))
    assert_error(post(client, None, deploy()), 401)


def test_other_methods_get_a_405(client, ingest_token):
    r = client.put(URL, data=orjson.dumps(deploy()), HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert r.status_code == 405 and r["Allow"] == "GET, POST"


def test_an_event_counts_against_the_token_rate_limit(client, db, settings):
    settings.INGEST_RATE_LIMIT = 100
    token, raw = ApiToken.issue("busy", ["ingest"])
    redis = redis_client()
    now = int(time.time())
    for second in range(now, now + 5):  # the token used this second's allowance already
        redis.set(redis_key("rate", token.id, second), 100, ex=10)
    r = assert_error(post(client, raw, deploy()), 429)
    assert r["error"].startswith("over the rate limit")


WEIRD = [None, True, 0, -1, 1e308, 10**30, "", "x" * 300, "a\x00b", "<script>", [], [1], {}, {"a": []}]
WEIRD += ["deploy", "2026-13-45T99:00:00Z", "\ud800", {"version": "1.3.0"}, {"k": 1}, time.time()]


def test_whatever_is_posted_the_answer_is_201_or_a_400_naming_a_field(client, ingest_token):
    rng = random.Random(15)
    created = 0
    for _ in range(300):
        doc = deploy()
        for field in rng.sample(["ts", "kind", "title", "tags"], rng.randint(1, 2)):
            doc[field] = rng.choice(WEIRD)
        if rng.random() < 0.1:
            doc["extra"] = rng.choice(WEIRD)
        # Unescaped, a lone surrogate becomes bytes that are not UTF-8.
        data = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        r = post(client, ingest_token, data)
        assert r.status_code in (201, 400), (doc, r.content)
        body = orjson.loads(r.content)
        if r.status_code == 201:
            created += 1
        else:
            assert body["error"]
    assert Event.objects.count() == created


# --- GET ---------------------------------------------------------------------------------------


@pytest.fixture
def history(db) -> dict[str, int]:
    token = ApiToken.issue("deployer", ["ingest"])[0]
    now = datetime.now(UTC)
    made = {}
    for name, ago, kind, tags in [
        ("v1.2.0", timedelta(hours=30), "deploy", {"version": "1.2.0"}),
        ("v1.3.0", timedelta(hours=2), "deploy", {"version": "1.3.0", "node": "node-2"}),
        ("pool size 8", timedelta(minutes=30), "config", {}),
        ("provider outage", timedelta(minutes=5), "incident", {"provider": "acme"}),
    ]:
        made[name] = Event.objects.create(ts=now - ago, kind=kind, title=name, tags=tags, token=token).id
    return made


def get(client, query: str, token: str | None = None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(f"{URL}?{query}", **extra)


def test_get_lists_the_window_newest_first(client, read_token, history):
    body = get(client, "window=24h", read_token).json()
    assert body["window"] == "24h"
    assert [e["title"] for e in body["events"]] == ["provider outage", "pool size 8", "v1.3.0"]
    first = body["events"][2]
    assert first == {
        "id": history["v1.3.0"],
        "ts": first["ts"],
        "kind": "deploy",
        "title": "v1.3.0",
        "tags": {"version": "1.3.0", "node": "node-2"},
        "verification": None,  # not yet due
    }
    assert first["ts"].endswith("Z")
    stored = Event.objects.get(title="v1.3.0").ts
    assert abs(datetime.fromisoformat(first["ts"]) - stored) < timedelta(milliseconds=1)


@pytest.mark.parametrize(
    "query, titles",
    [
        ("", ["provider outage", "pool size 8", "v1.3.0"]),  # the default window: 24h
        ("window=1h", ["provider outage", "pool size 8"]),
        ("window=2d", ["provider outage", "pool size 8", "v1.3.0", "v1.2.0"]),
        ("window=2d&kind=deploy", ["v1.3.0", "v1.2.0"]),
        ("window=1h&kind=deploy", []),
        ("kind=incident", ["provider outage"]),
    ],
)
def test_get_filters_by_window_and_kind(client, read_token, history, query, titles):
    assert [e["title"] for e in get(client, query, read_token).json()["events"]] == titles


def test_get_answers_at_most_500_events(client, read_token, db):
    token = ApiToken.issue("chatty", ["ingest"])[0]
    now = datetime.now(UTC)
    Event.objects.bulk_create(
        Event(ts=now - timedelta(seconds=i), kind="note", title=f"n{i}", token=token) for i in range(501)
    )
    events = get(client, "window=1h", read_token).json()["events"]
    assert len(events) == 500 and events[0]["title"] == "n0" and events[-1]["title"] == "n499"


@pytest.mark.parametrize(
    "query, param",
    [
        ("window=1y", "window"),
        ("window=0m", "window"),
        ("window=400d", "window"),
        ("kind=party", "kind"),
        ("colour=red", "colour"),
        ("metric=agent_response_ms", "metric"),
    ],
)
def test_get_with_a_bad_parameter_gets_a_400_naming_it(client, read_token, history, query, param):
    r = get(client, query, read_token)
    assert r.status_code == 400 and r.json()["param"] == param


def test_get_needs_a_read_token_or_a_session(client, ingest_token, history):
    assert get(client, "window=1h").status_code == 401
    assert get(client, "window=1h", ingest_token).status_code == 401
    client.force_login(User.objects.create_user("viewer", password="x" * 12))
    assert get(client, "window=1h").status_code == 200
