"""The SDK: what an agent records reaches perfdash exactly once, whatever the server does."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from django.db import connection

from collectors import Client
from perfdash.api.models import ApiToken
from tests.conftest import free_port, start_server, wait_until


def make_client(url: str, tmp_path=None, **kw) -> Client:
    kw.setdefault("flush_interval", 0.05)
    return Client(
        url,
        "pd_test",
        node="node-1",
        agent="agent-1",
        spool_dir=kw.pop("spool_dir", tmp_path / "spool" if tmp_path else ""),
        **kw,
    )


def test_timers_counters_and_decorators_send_the_well_known_metrics(receiver, tmp_path):
    perf = make_client(receiver.url, tmp_path)

    @perf.tool("web_search")
    def search() -> str:
        time.sleep(0.01)
        return "ok"

    @perf.llm("acme", "m-large")
    async def ask() -> str:
        await asyncio.sleep(0.01)
        return "answer"

    assert search() == "ok"
    assert asyncio.run(ask()) == "answer"
    with perf.response():
        pass
    with pytest.raises(KeyError), perf.memory_op("read"):
        raise KeyError("missing")
    perf.tokens(350, "acme", "m-large")
    perf.tokens(90, "acme", "m-large", token_type="output")
    perf.cache_hit()
    perf.cache_miss()
    perf.close()

    got = {(p["metric"], tuple(sorted(p.get("tags", {}).items()))): p for p in receiver.points()}
    assert got[("tool_execution_ms", (("tool", "web_search"),))]["value"] >= 10
    assert got[("llm_call_ms", (("model", "m-large"), ("provider", "acme")))]["value"] >= 10
    assert ("agent_response_ms", ()) in got and ("memory_op_ms", (("op", "read"),)) in got
    assert got[("errors_total", (("error", "KeyError"), ("op", "read")))]["value"] == 1
    assert got[("tokens_total", (("model", "m-large"), ("provider", "acme")))]["value"] == 350
    assert (
        got[("tokens_total", (("model", "m-large"), ("provider", "acme"), ("type", "output")))]["value"] == 90
    )
    assert ("cache_hits_total", ()) in got and ("cache_misses_total", ()) in got
    assert all(p["node"] == "node-1" and p["agent"] == "agent-1" for p in receiver.points())
    assert len({r["batch_id"] for r in receiver.requests}) == len(receiver.requests)


def test_async_context_manager_times_the_block(receiver):
    perf = make_client(receiver.url)

    async def work() -> None:
        async with perf.tool("code_exec"):
            await asyncio.sleep(0.02)

    asyncio.run(work())
    perf.close()
    assert receiver.points()[0]["value"] >= 20


def test_a_4xx_is_not_retried_and_is_logged_once(receiver, caplog):
    receiver.script = [(400, {}, {"error": "value must be finite", "point": 0, "field": "value"})] * 2
    perf = make_client(receiver.url)
    with caplog.at_level(logging.ERROR, "perfdash.collectors"):
        for _ in range(2):
            perf.record("agent_response_ms", 5.0)
            perf.flush(timeout=2)
        time.sleep(0.3)  # several flush intervals: nothing is sent again
    perf.close()
    assert len(receiver.requests) == 2  # one per batch, never a retry
    assert perf.dropped == 2
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "value must be finite" in caplog.records[0].message


def test_a_busy_server_is_retried_after_its_retry_after(receiver):
    receiver.script = [(503, {"Retry-After": "1"}, {"error": "queue unavailable"})]
    perf = make_client(receiver.url)
    perf.record("agent_response_ms", 5.0)
    assert not perf.flush(timeout=10)  # returns as soon as the server says "later"
    wait_until(lambda: len(receiver.requests) == 2, timeout=10, what="the retry")
    perf.close()
    assert perf.sent == 1
    assert receiver.requests[0]["batch_id"] == receiver.requests[1]["batch_id"]  # same batch, not a new one
    assert receiver.times[1] - receiver.times[0] >= 1.0


def test_the_memory_cap_holds_while_the_server_is_down():
    perf = make_client(f"http://127.0.0.1:{free_port()}", max_buffer=1000, batch_size=100)
    peak = 0
    for i in range(20_000):
        perf.record("agent_response_ms", float(i))
        if i % 500 == 0:
            peak = max(peak, perf.buffered())
    perf.flush(timeout=0.5)
    peak = max(peak, perf.buffered())
    perf.close(timeout=0.5)
    assert peak <= 1000
    assert perf.dropped >= 19_000


def test_the_spool_is_bounded_on_disk(tmp_path):
    perf = make_client(f"http://127.0.0.1:{free_port()}", tmp_path, batch_size=1000, spool_max_bytes=20_000)
    for i in range(30_000):
        perf.record("agent_response_ms", float(i), ts=time.time() - i)
    perf.close(timeout=1)
    files = list((tmp_path / "spool").glob("*.json.gz"))
    assert 0 < sum(f.stat().st_size for f in files) <= 20_000
    assert perf.dropped > 0 and perf.buffered() == 0


# --- against the real server ---------------------------------------------------------------


def stored(metric: str | None = None) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM metrics_point p JOIN metrics_series s ON s.id = p.series_id "
            "WHERE %s::text IS NULL OR s.metric = %s",
            [metric, metric],
        )
        return cur.fetchone()[0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_points_recorded_by_the_sdk_arrive_exactly_once(
    live_server_url, celery_worker, clean_tables, tmp_path
):
    token = ApiToken.issue("sdk", ["ingest"])[1]
    with Client(
        live_server_url,
        token,
        node="node-1",
        agent="agent-7",
        spool_dir=tmp_path,
        flush_interval=0.1,
        batch_size=300,
    ) as perf:
        for i in range(1000):
            with perf.tool("web_search" if i % 2 else "calculator"):
                pass
        perf.count("tokens_total", 10, provider="acme", model="m")
    wait_until(lambda: stored() == 1001, what="1001 stored points")
    time.sleep(0.5)
    assert stored("tool_execution_ms") == 1000 and stored("tokens_total") == 1
    assert perf.sent == 1001 and perf.dropped == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_points_spooled_while_the_server_is_down_arrive_once_after_a_restart(
    celery_worker, clean_tables, tmp_path
):
    token = ApiToken.issue("sdk", ["ingest"])[1]
    port = free_port()
    spool = tmp_path / "spool"
    first = Client(
        f"http://127.0.0.1:{port}", token, agent="a", spool_dir=spool, flush_interval=0.05, batch_size=200
    )
    for i in range(1000):
        first.record("agent_response_ms", float(i))
    first.close(timeout=1)  # the agent process ends with the server still down
    assert first.spooled() == 1000 and stored() == 0

    server, url = start_server(tmp_path, port=port)
    try:
        second = Client(url, token, agent="a", spool_dir=spool, flush_interval=0.05)  # restarted agent
        assert second.flush(timeout=20)
        second.close()
        wait_until(lambda: stored() == 1000, what="the spooled points")
        time.sleep(0.5)
        assert stored() == 1000 and second.spooled() == 0
    finally:
        server.kill()


def test_the_memory_sampler_reports_this_process_rss(receiver):
    from collectors.memory import rss_bytes

    perf = make_client(receiver.url)
    perf.sample_memory(every=0.05)
    time.sleep(0.3)
    perf.close()
    samples = [p["value"] for p in receiver.points() if p["metric"] == "agent_memory_bytes"]
    assert len(samples) >= 3
    assert all(0.5 * rss_bytes() < v < 2 * rss_bytes() for v in samples)


def test_numpy_and_decimal_values_are_recorded_as_plain_numbers(receiver):
    from decimal import Decimal

    import numpy as np

    perf = make_client(receiver.url)
    perf.record("agent_response_ms", np.float32(12.5), {"tool": np.str_("x")}, ts=np.float64(time.time()))
    perf.record("tokens_total", Decimal("3"))
    perf.close()
    assert sorted(p["value"] for p in receiver.points()) == [3.0, 12.5]
    assert perf.dropped == 0


# --- default tags ------------------------------------------------------------------------------


def tags_of(receiver) -> dict[str, dict[str, str]]:
    return {p["metric"]: p.get("tags", {}) for p in receiver.points()}


def test_default_tags_go_on_every_point_and_a_points_own_tags_win(receiver):
    perf = make_client(receiver.url, tags={"version": "1.3.0", "variant": "a"})
    with perf.response():
        pass
    with perf.tool("web_search"):
        pass
    perf.record("queue_depth", 3, {"variant": "b"})
    perf.close()
    assert tags_of(receiver) == {
        "agent_response_ms": {"version": "1.3.0", "variant": "a"},
        "tool_execution_ms": {"version": "1.3.0", "variant": "a", "tool": "web_search"},
        "queue_depth": {"version": "1.3.0", "variant": "b"},
    }


def test_default_tags_come_from_perfdash_tags_unless_the_client_is_given_some(receiver, monkeypatch):
    monkeypatch.setenv("PERFDASH_TAGS", "version=1.3.0, variant=b")
    from_env = make_client(receiver.url)
    from_env.record("agent_response_ms", 1)
    from_env.close()
    given = make_client(receiver.url, tags={"version": "2.0.0"})
    given.record("tool_execution_ms", 1, {"tool": "calc"})
    given.close()
    assert tags_of(receiver) == {
        "agent_response_ms": {"version": "1.3.0", "variant": "b"},
        "tool_execution_ms": {"version": "2.0.0", "tool": "calc"},
    }


@pytest.mark.parametrize(
    "tags, env, says",
    [
        ({"build id": "7"}, "", "may only use letters"),
        ({"version": ""}, "", "1 to 128 characters"),
        ({"version": "1\n3"}, "", "control characters"),
        (None, "version", "'version' is not key=value"),
        (None, "version=1.3.0,2x=y", "must not start with a digit"),
    ],
    ids=["key", "empty", "control", "no-equals", "env-key"],
)
def test_bad_default_tags_raise_when_the_client_is_made(monkeypatch, tags, env, says):
    monkeypatch.setenv("PERFDASH_TAGS", env)
    threads = threading.active_count()
    with pytest.raises(ValueError, match=says):
        make_client("http://127.0.0.1:9", tags=tags)
    assert threading.active_count() == threads  # no flush thread left behind


def test_default_tags_never_push_a_point_past_the_tag_limit(receiver):
    perf = make_client(receiver.url, tags={"version": "1.3.0"})
    full = {f"k{i}": "v" for i in range(16)}
    perf.record("agent_response_ms", 1, full)
    perf.record("tool_execution_ms", 1, dict(list(full.items())[:15]))
    perf.close()
    got = tags_of(receiver)
    assert got["agent_response_ms"] == full
    assert len(got["tool_execution_ms"]) == 16 and got["tool_execution_ms"]["version"] == "1.3.0"
