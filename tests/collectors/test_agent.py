"""The node agent: what local agents send it over StatsD and HTTP, and what it samples, reaches
the real perfdash exactly once, and nothing a bad sender sends gets in anyone's way."""

from __future__ import annotations

import gzip
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from datadog.dogstatsd import DogStatsd
from django.db import connection

from collectors.agent.cli import build_parser
from collectors.agent.forwarding import NODE_LIMITS, OncePerProblem
from collectors.agent.local_ingest import LocalIngest, parse_body
from collectors.agent.processes import find_agents
from collectors.client import Client
from collectors.protocol import ProtocolError, decode_body
from perfdash.api.models import ApiToken
from tests.conftest import Proc, free_port, server_env, wait_until

SeriesRow = tuple[str, str, str, tuple[tuple[str, str], ...]]  # metric, node, agent, sorted tags


# --- the local endpoint's checks, without a server ---------------------------------------------


def body(*points: dict, **envelope: object) -> bytes:
    return json.dumps({**envelope, "points": list(points)}).encode()


def good(**fields: object) -> dict:
    return {
        "ts": time.time(),
        "node": "n1",
        "agent": "a1",
        "metric": "tool_execution_ms",
        "value": 5.0,
        **fields,
    }


def test_a_valid_body_becomes_points_with_unix_times():
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC).timestamp()
    raw = body(
        good(ts=now, tags={"tool": "calc"}),
        good(ts="2026-01-01T00:00:00.5Z", metric="tokens_total", value=3),
        batch_id="b1",
    )
    batch_id, points = parse_body(raw, now)
    assert batch_id == "b1"
    assert points == [
        (now, "tool_execution_ms", 5.0, {"tool": "calc"}, "n1", "a1"),
        (now - 59.5, "tokens_total", 3.0, None, "n1", "a1"),
    ]


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ({"ts": 1}, "ts"),  # older than the retention
        ({"ts": time.time() + 3600}, "ts"),
        ({"ts": "2026-01-01T00:00:00"}, "ts"),  # no offset
        ({"ts": "yesterday"}, "ts"),
        ({"value": "12"}, "value"),
        ({"value": True}, "value"),
        ({"value": -1}, "value"),  # a negative duration
        ({"value": 10**400}, "value"),
        ({"value": float("nan")}, "value"),  # Python's json writes NaN, as sloppy senders do
        ({"value": float("-inf")}, "value"),
        ({"metric": "9lives"}, "metric"),
        ({"metric": "tool execution"}, "metric"),
        ({"metric": "m" * 129}, "metric"),
        ({"agent": ""}, "agent"),
        ({"agent": "a" * 129}, "agent"),
        ({"node": "bad\nnode"}, "node"),
        ({"node": 7}, "node"),
        ({"tags": ["tool"]}, "tags"),
        ({"tags": {"tool": 1}}, "tags.tool"),
        ({"tags": {"bad key": "x"}}, "tags.bad key"),
        ({"tags": {f"k{i}": "v" for i in range(17)}}, "tags"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_point_is_refused_naming_its_index_and_field(point: dict, field: str):
    with pytest.raises(ProtocolError) as refused:
        parse_body(body(good(), good(**point)), time.time())
    assert (refused.value.status, refused.value.point, refused.value.field) == (400, 1, field)


@pytest.mark.parametrize("field", ["ts", "node", "agent", "metric", "value"])
def test_a_missing_field_is_named(field: str):
    point = good()
    del point[field]
    with pytest.raises(ProtocolError) as refused:
        parse_body(body(point), time.time())
    assert (refused.value.point, refused.value.field, refused.value.message) == (0, field, "missing field")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (body(), 400),
        (body(good(), extra=1), 400),
        (body(good(), batch_id=""), 400),
        (body(*[good()] * 10_001), 413),
    ],
)
def test_a_bad_body_is_refused_whole(raw: bytes, status: int):
    with pytest.raises(ProtocolError) as refused:
        parse_body(raw, time.time())
    assert refused.value.status == status


def test_bodies_must_be_json_plain_or_gzip_and_not_a_gzip_bomb():
    assert decode_body(gzip.compress(b"{}"), "application/json; charset=utf-8", "gzip", NODE_LIMITS) == b"{}"
    for args, status in [
        ((b"{}", "text/plain", ""), 415),
        ((b"{}", "application/json", "br"), 415),
        ((b"not gzip", "application/json", "gzip"), 400),
        ((gzip.compress(b" " * (11 * 1024 * 1024)), "application/json", "gzip"), 413),
    ]:
        with pytest.raises(ProtocolError) as refused:
            decode_body(*args, NODE_LIMITS)
        assert refused.value.status == status


@pytest.mark.parametrize("raw", [rb"\ud800", b"\xff", b"\xed\xa0\x80"], ids=["escape", "byte", "encoded"])
def test_a_local_body_with_a_string_that_is_not_unicode_is_refused_and_nothing_recorded(receiver, raw):
    client = Client(receiver.url, "pd_test", node="n1", agent="a1", spool_dir="")
    sent = body(good(), good(tags={"tool": "@"})).replace(b'"@"', b'"web' + raw + b'"')
    status, answer = LocalIngest(client).handle(sent, "application/json", "")
    assert (status, answer["point"], answer["field"]) == (400, 1, "tags.tool")
    assert client.buffered() == 0
    client.close()


def test_help_documents_every_option():
    parser = build_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} >= {
        "url",
        "token",
        "node",
        "bind",
        "statsd_port",
        "http_port",
        "default_agent",
        "pid_dir",
        "process_pattern",
        "sample_every",
        "spool_dir",
        "tag",
    }
    assert all(a.help for a in options)


@pytest.mark.parametrize(
    "given, says",
    [("version", "is not key=value"), ("build id=7", "may only use letters"), ("v=", "1 to 128")],
)
def test_a_bad_tag_is_a_usage_error(capsys, given, says):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["--tag", given])
    assert exit.value.code == 2 and says in capsys.readouterr().err


# --- finding agent processes -------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    # A unique argument, so a pattern matches this process and no other on the machine.
    proc = subprocess.Popen(["sleep", f"{60 + time.time() % 1:.6f}"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_pattern_finds_processes_by_command_line_and_a_pid_file_names_them_better(sleeper, tmp_path):
    pattern = re.compile(re.escape(" ".join(sleeper.args)))
    [found] = find_agents(None, pattern, OncePerProblem())
    assert (found.agent, found.process.pid) == (f"sleep-{sleeper.pid}", sleeper.pid)

    (tmp_path / "worker-7.pid").write_text(f"{sleeper.pid}\n")
    [found] = find_agents(tmp_path, pattern, OncePerProblem())
    assert found.agent == "worker-7"


def test_stale_and_garbled_pid_files_are_not_agents(sleeper, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / "ghost.pid").write_text(str(gone.pid))
    (tmp_path / "junk.pid").write_text("hello")
    (tmp_path / "live.pid").write_text(str(sleeper.pid))
    assert [a.agent for a in find_agents(tmp_path, None, OncePerProblem())] == ["live"]


# --- end to end, against the real server and worker --------------------------------------------


def start_agent(tmp_path: Path, url: str, token: str, node: str, *extra: str) -> tuple[Proc, int, int]:
    statsd_port, http_port = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "collectors",
        "agent",
        "--url",
        url,
        "--token",
        token,
        "--node",
        node,
        "--statsd-port",
        str(statsd_port),
        "--http-port",
        str(http_port),
        "--spool-dir",
        str(tmp_path / "spool"),
        *extra,
    ]
    proc = Proc(cmd, server_env(), tmp_path / "agent.log")

    def listening() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"the agent exited:\n{proc.output()}")
        return "perfdash node agent for node" in proc.output()

    wait_until(listening, 15, "the agent to start")
    return proc, statsd_port, http_port


def stop_agent(proc: Proc) -> str:
    proc.kill(signal.SIGTERM)
    assert proc.popen.returncode == 0, proc.output()
    assert "perfdash node agent stopped" in proc.output()
    return proc.output()


def stored() -> dict[SeriesRow, tuple[int, float]]:
    """Stored raw points: (count, sum of values) per series."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT s.metric, s.node, s.agent, s.tags_key, count(*), sum(p.value) FROM metrics_point p "
            "JOIN metrics_series s ON s.id = p.series_id GROUP BY 1, 2, 3, 4"
        )
        rows = cur.fetchall()
    return {(m, n, a, tuple(sorted(json.loads(t).items()))): (c, s) for m, n, a, t, c, s in rows}


def stored_points() -> int:
    return sum(c for c, _ in stored().values())


def post(port: int, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/api/v1/ingest",
        content=content,
        timeout=10,
        headers={"Content-Type": "application/json", **headers},
    )


@pytest.fixture
def token(clean_tables) -> str:
    return ApiToken.issue("node-agent", ["ingest"])[1]


# Each test has its own node: the session's worker caches series ids for its lifetime.
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_statsd_and_local_posts_are_stored_exactly_once(live_server_url, celery_worker, token, tmp_path):
    node = "e2e-forward"
    agent, statsd_port, http_port = start_agent(tmp_path, live_server_url, token, node)

    dog = DogStatsd(host="127.0.0.1", port=statsd_port, disable_telemetry=True)
    for _ in range(3):
        dog.timing("agent.response", 120, tags=["agent:agent-1"])
    for _ in range(2):
        dog.timing("tool.execution", 812, tags=["tool:web_search", "agent:agent-1"])
    dog.distribution("llm.call", 300, tags=["agent:agent-2", "provider:acme", "model:m-large"])
    dog.histogram("memory.op", 4.5, tags=["agent:agent-2", "op:read"])
    dog.increment("tokens", 350, tags=["agent:agent-2", "provider:acme"])
    dog.gauge("agent.memory.bytes", 1048576)  # no agent tag: the default agent
    dog.decrement("tokens", tags=["agent:agent-2"])  # a negative total the server would refuse
    dog.set("users", "alice", tags=["agent:agent-2"])  # no perfdash metric: ignored
    dog.close_socket()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # a sampled counter, after garbage
        udp.sendto(b"garbage\ntokens:3|c|@0.5|#agent:agent-3", ("127.0.0.1", statsd_port))

    now = time.time()
    local = body(
        {
            "ts": now,
            "node": node,
            "agent": "py-agent",
            "metric": "tool_execution_ms",
            "value": 50,
            "tags": {"tool": "calculator"},
        },
        {
            "ts": datetime.fromtimestamp(now, UTC).isoformat(),
            "node": node,
            "agent": "py-agent",
            "metric": "errors_total",
            "value": 1,
            "tags": {"error": "Timeout"},
        },
        batch_id="local-1",
    )
    assert post(http_port, local).json() == {"accepted": 2}
    retried = post(http_port, gzip.compress(local), **{"Content-Encoding": "gzip"})
    assert (retried.status_code, retried.json()) == (202, {"accepted": 2})  # the same batch: a no-op

    output = stop_agent(agent)
    expected = {
        ("agent_response_ms", node, "agent-1", ()): (3, 360.0),
        ("tool_execution_ms", node, "agent-1", (("tool", "web_search"),)): (2, 1624.0),
        ("llm_call_ms", node, "agent-2", (("model", "m-large"), ("provider", "acme"))): (1, 300.0),
        ("memory_op_ms", node, "agent-2", (("op", "read"),)): (1, 4.5),
        ("tokens_total", node, "agent-2", (("provider", "acme"),)): (1, 350.0),
        ("agent_memory_bytes", node, "statsd", ()): (1, 1048576.0),
        ("tokens_total", node, "agent-3", ()): (1, 6.0),
        ("tool_execution_ms", node, "py-agent", (("tool", "calculator"),)): (1, 50.0),
        ("errors_total", node, "py-agent", (("error", "Timeout"),)): (1, 1.0),
    }
    wait_until(lambda: stored_points() >= 12, what="12 stored points")
    time.sleep(1)  # anything sent twice would arrive by now
    assert stored() == expected
    assert "10 StatsD points (2 malformed, 1 ignored), 2 local ingest points" in output


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_bad_local_point_is_refused_and_does_not_hold_up_good_ones(
    live_server_url, celery_worker, token, tmp_path
):
    node = "e2e-refuse"
    agent, _, http_port = start_agent(tmp_path, live_server_url, token, node)
    now = time.time()
    bad = body(
        {"ts": now, "node": node, "agent": "sloppy", "metric": "agent_response_ms", "value": 10},
        {"ts": now, "node": node, "agent": "sloppy", "metric": "agent_response_ms", "value": float("nan")},
    )
    refused = post(http_port, bad)
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": "value must be finite", "point": 1, "field": "value"},
    )
    for i in range(3):
        point = {"ts": now, "node": node, "agent": "careful", "metric": "agent_response_ms", "value": i}
        assert post(http_port, body(point)).status_code == 202

    stop_agent(agent)
    wait_until(lambda: stored_points() >= 3, what="3 stored points")
    time.sleep(1)
    assert stored() == {("agent_response_ms", node, "careful", ()): (3, 3.0)}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_sampler_reports_the_memory_of_a_pid_files_process(
    live_server_url, celery_worker, token, tmp_path, sleeper
):
    node = "e2e-sampler"
    pids = tmp_path / "pids"
    pids.mkdir()
    (pids / "worker-7.pid").write_text(str(sleeper.pid))
    agent, _, _ = start_agent(
        tmp_path, live_server_url, token, node, "--pid-dir", str(pids), "--sample-every", "0.3"
    )

    def sampled_twice() -> bool:
        return all(count >= 2 for count, _ in stored().values()) and len(stored()) == 2

    wait_until(sampled_twice, what="two rounds of samples")
    stop_agent(agent)
    rows = stored()
    assert set(rows) == {
        ("agent_memory_bytes", node, "worker-7", ()),
        ("active_agents", node, f"node-agent-{node}", ()),
    }
    count, total = rows[("active_agents", node, f"node-agent-{node}", ())]
    assert total == count  # every sample saw exactly one agent
    count, total = rows[("agent_memory_bytes", node, "worker-7", ())]
    assert total / count > 100_000  # a real resident set, in bytes


@pytest.mark.slow
def test_tags_given_with_tag_go_on_everything_forwarded_unless_a_point_has_them(receiver, tmp_path, sleeper):
    pids = tmp_path / "pids"
    pids.mkdir()
    (pids / "worker-7.pid").write_text(str(sleeper.pid))
    tagging = (
        "--tag",
        "version=1.3.0",
        "--tag",
        "variant=b",
        "--pid-dir",
        str(pids),
        "--sample-every",
        "0.3",
    )
    agent, statsd_port, http_port = start_agent(tmp_path, receiver.url, "pd_test", "tagged", *tagging)
    assert "tagging every point version=1.3.0,variant=b" in agent.output()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"tool.execution:812|ms|#tool:web_search,agent:agent-1", ("127.0.0.1", statsd_port))
    now = time.time()
    local = body(
        {
            "ts": now,
            "node": "tagged",
            "agent": "py",
            "metric": "agent_response_ms",
            "value": 5,
            "tags": {"variant": "a"},
        },
        {"ts": now, "node": "tagged", "agent": "py", "metric": "errors_total", "value": 1},
    )
    assert post(http_port, local).status_code == 202
    every = {"tool_execution_ms", "agent_response_ms", "errors_total", "agent_memory_bytes", "active_agents"}
    wait_until(lambda: {p["metric"] for p in receiver.points()} >= every, 15, "every source forwarded")
    stop_agent(agent)

    release = {"version": "1.3.0", "variant": "b"}
    tags = {(p["metric"], p["agent"]): p.get("tags") for p in receiver.points()}
    assert tags == {
        ("tool_execution_ms", "agent-1"): {"tool": "web_search", **release},
        ("agent_response_ms", "py"): {"version": "1.3.0", "variant": "a"},
        ("errors_total", "py"): release,
        ("agent_memory_bytes", "worker-7"): release,
        ("active_agents", "node-agent-tagged"): release,
    }
