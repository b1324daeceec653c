"""Events from the client side: `perf.event` and `python -m collectors event` send one event,
retry a busy server, give up on a refusal, and check the event before sending it."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from collectors import Client
from collectors import event as event_protocol
from perfdash.api.models import ApiToken
from perfdash.events.models import Event
from tests.conftest import ROOT, free_port, server_env


@pytest.fixture
def server(receiver):
    """The collectors' local receiver, answering as the events endpoint does."""
    receiver.default = (201, {}, {"id": 1})
    return receiver


def client(url: str) -> Client:
    return Client(url, "pd_test", node="node-1", agent="agent-1", spool_dir="", flush_interval=0.05)


def test_perf_event_posts_one_event_to_the_events_path(server):
    perf = client(server.url)
    assert perf.event("deploy", "v1.3.0", version="1.3.0", build=1234) is True
    perf.close()
    [(path, auth, body)] = server.seen
    assert path == "/api/v1/events" and auth == "Bearer pd_test"
    assert {k: body[k] for k in ("kind", "title", "tags")} == {
        "kind": "deploy",
        "title": "v1.3.0",
        "tags": {"version": "1.3.0", "build": "1234"},
    }
    assert isinstance(body["ts"], float)


def test_an_event_carries_the_client_s_default_tags_under_its_own(server):
    perf = Client(
        server.url, "pd_test", node="n", agent="a", spool_dir="", tags={"version": "1.3.0", "variant": "b"}
    )
    assert perf.event("deploy", "go", variant="a") is True
    perf.close()
    [(_, _, body)] = server.seen
    assert body["tags"] == {"version": "1.3.0", "variant": "a"}


def test_an_event_perfdash_would_refuse_raises_before_anything_is_sent(server):
    perf = client(server.url)
    with pytest.raises(ValueError, match="kind must be one of"):
        perf.event("party", "v1.3.0")
    with pytest.raises(ValueError, match="1 to 200"):
        perf.event("note", "x" * 201)
    with pytest.raises(ValueError, match="letters"):
        perf.event("note", "x", **{"bad key": "1"})
    perf.close()
    assert server.seen == []


def test_a_busy_server_is_retried_with_the_same_body_until_it_takes_the_event(server):
    server.script = [(503, {"Retry-After": "2"}, {"error": "away"}), (429, {}, {"error": "busy"})]
    slept: list[float] = []
    event = event_protocol.of("config", "pool size 8")
    event_protocol.send(server.url, "pd_test", event, sleep=slept.append)
    assert len(server.seen) == 3
    assert server.seen[0] == server.seen[2]  # the same event, not a new one
    assert slept[0] >= 2  # never sooner than the server's Retry-After
    assert len(slept) == 2


def test_a_refused_event_is_not_retried_and_perf_event_says_so(server, caplog):
    server.script = [(400, {}, {"error": "tags.version must be a string", "field": "tags.version"})]
    perf = client(server.url)
    with caplog.at_level(logging.WARNING, "perfdash.collectors"):
        assert perf.event("deploy", "v1.3.0") is False
    perf.close()
    assert len(server.seen) == 1
    assert "HTTP 400: tags.version must be a string" in caplog.text


def test_sending_gives_up_once_the_retries_run_out():
    event = event_protocol.of("note", "x")
    with pytest.raises(event_protocol.NotSent, match="gave up after 0 s") as raised:
        event_protocol.send(f"http://127.0.0.1:{free_port()}", "pd_test", event, retry_for=0)
    assert raised.value.code is None


# --- against the real server -------------------------------------------------------------------


def command(*args: str, url: str | None = None, token: str | None = None) -> subprocess.CompletedProcess:
    where = [*(["--url", url] if url else []), *(["--token", token] if token else [])]
    env = {k: v for k, v in server_env().items() if k not in ("PERFDASH_URL", "PERFDASH_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "collectors", "event", *where, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_perf_event_is_stored_by_the_real_server(live_server_url):
    token, raw = ApiToken.issue("sdk", ["ingest"])
    perf = Client(live_server_url, raw, agent="a", spool_dir="")
    assert perf.event("deploy", "v1.3.0", version="1.3.0") is True
    perf.close()
    event = Event.objects.get()
    assert (event.kind, event.title, event.tags, event.token_id) == (
        "deploy",
        "v1.3.0",
        {"version": "1.3.0"},
        token.id,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_event_command_exits_0_once_stored_1_when_not_and_2_for_a_bad_argument(live_server_url):
    raw = ApiToken.issue("deployer", ["ingest"])[1]
    reader = ApiToken.issue("reader", ["read"])[1]

    done = command(
        "deploy", "v1.4.0", "--tag", "version=1.4.0", "--tag", "node=node-2", url=live_server_url, token=raw
    )
    assert done.returncode == 0, done.stderr
    assert "deploy 'v1.4.0' stored" in done.stdout
    event = Event.objects.get()
    assert (event.kind, event.title, event.tags) == (
        "deploy",
        "v1.4.0",
        {"version": "1.4.0", "node": "node-2"},
    )

    refused = command("note", "x", url=live_server_url, token=reader)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    away = command("note", "x", "--retry-for", "0", url=f"http://127.0.0.1:{free_port()}", token=raw)
    assert away.returncode == 1 and "gave up" in away.stderr

    for bad, words in [
        (["party", "x"], "invalid choice"),
        (["note", "x", "--tag", "version"], "KEY=VALUE"),
        (["note", "x" * 201], "1 to 200"),
        (["note", "x", "--ts", "yesterday"], "RFC 3339"),
    ]:
        result = command(*bad, url=live_server_url, token=raw)
        assert result.returncode == 2 and words in result.stderr, (bad, result.stderr)
    missing = command("note", "x", url=live_server_url)
    assert missing.returncode == 2 and "--token" in missing.stderr
    assert Event.objects.count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_simulator_marks_its_start_with_a_deploy_event(live_server_url):
    raw = ApiToken.issue("fleet", ["ingest"])[1]
    where = ["--url", live_server_url, "--token", raw, "--agents", "2", "--nodes", "1", "--duration", "1"]

    def simulate(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "collectors", "simulate", *where, *extra],
            cwd=ROOT,
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = simulate("--deploy-event", "1.3.0")
    assert done.returncode == 0, done.stderr
    event = Event.objects.get()
    assert (event.kind, event.title, event.tags) == ("deploy", "version 1.3.0", {"version": "1.3.0"})
    assert simulate("--deploy-event", "1.3.0", "--dry-run").returncode == 0  # sends nothing
    bad = simulate("--deploy-event", "a\tb")
    assert bad.returncode == 2 and "--deploy-event:" in bad.stderr and "control characters" in bad.stderr
    assert Event.objects.count() == 1
