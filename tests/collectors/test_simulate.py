"""The fleet simulator: its traffic model, and a run against the real server."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest
from django.db import connection
from django.db.models import Sum

from collectors.simulate import DAY, HOUR, MAX_BATCH_POINTS, MINUTE, Episode, Fleet, backfill_step
from perfdash.api.models import ApiToken
from perfdash.events.models import Event
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.models import Series
from tests.conftest import ROOT, start_server, wait_until

MIDNIGHT = datetime(2026, 11, 25, tzinfo=UTC).timestamp()
NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.]*\Z")
FIELDS = {"ts", "node", "agent", "metric", "value"}
GAUGES = {"agent_memory_bytes", "active_agents"}


def fleet(agents: int = 40, nodes: int = 3, seed: int = 7) -> Fleet:
    return Fleet(agents, nodes, seed, full_at=MIDNIGHT + DAY)


def values(points: list[dict], metric: str, **tags: str) -> np.ndarray:
    return np.array(
        [
            p["value"]
            for p in points
            if p["metric"] == metric and all(p.get("tags", {}).get(k) == v for k, v in tags.items())
        ]
    )


def quiet_hour(f: Fleet, kind: str) -> float:
    """The start of an hour of the test day without an episode of `kind`."""
    return next(
        t
        for t in np.arange(MIDNIGHT, MIDNIGHT + DAY, HOUR)
        if not any(e.kind == kind for e in f.episodes(t, t + HOUR))
    )


def first_episode(f: Fleet, kind: str) -> Episode:
    return next(e for e in f.episodes(MIDNIGHT, MIDNIGHT + 7 * DAY) if e.kind == kind)


# --- the generator --------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_points_and_another_seed_others():
    a = fleet().points(MIDNIGHT, MIDNIGHT + 30)
    assert a == fleet().points(MIDNIGHT, MIDNIGHT + 30)
    assert a != fleet(seed=8).points(MIDNIGHT, MIDNIGHT + 30)
    assert fleet().episodes(MIDNIGHT, MIDNIGHT + 3 * DAY) == fleet().episodes(MIDNIGHT, MIDNIGHT + 3 * DAY)


@pytest.mark.parametrize(("seconds", "step", "sample"), [(60, 1.0, 1.0), (3 * HOUR, MINUTE, 1 / 15)])
def test_every_point_keeps_the_v1_contract(seconds, step, sample):
    f = fleet()
    t0 = MIDNIGHT + 15 * HOUR
    batches = list(f.batches(t0, t0 + seconds, step, sample))
    points = [p for batch in batches for p in batch]
    assert len(points) > 1000
    assert all(len(b) <= MAX_BATCH_POINTS and len({p["node"] for p in b}) == 1 for b in batches)
    for p in points:
        assert FIELDS <= set(p) <= FIELDS | {"tags"}
        assert t0 <= p["ts"] < t0 + seconds
        assert math.isfinite(p["value"]) and p["value"] >= 0
        assert NAME.match(p["metric"]) and len(p["metric"]) <= 128
        assert 1 <= len(p["node"]) <= 128 and 1 <= len(p["agent"]) <= 128
        tags = p.get("tags", {})
        assert len(tags) <= 16
        assert all(NAME.match(k) and 1 <= len(v) <= 128 for k, v in tags.items())


def test_every_well_known_metric_is_there():
    points = fleet().points(MIDNIGHT, MIDNIGHT + 60)
    assert {p["metric"] for p in points} >= {
        "agent_response_ms",
        "tool_execution_ms",
        "llm_call_ms",
        "memory_op_ms",
        "agent_memory_bytes",
        "active_agents",
        "tokens_total",
        "cache_hits_total",
        "cache_misses_total",
    }


def test_each_tool_has_its_own_median_and_agents_answer_in_about_900_ms():
    f = fleet()
    t0 = quiet_hour(f, "slow_tool")
    points = f.points(t0, t0 + HOUR, MINUTE)
    order = ["calculator", "file_read", "sql_query", "web_search", "browser", "code_exec"]
    medians = [np.median(values(points, "tool_execution_ms", tool=t)) for t in order]
    assert medians == sorted(medians)
    assert 3 < medians[0] < 8 and 900 < medians[3] < 1500
    assert values(points, "tool_execution_ms").max() <= 30_000
    assert 700 < np.median(values(points, "agent_response_ms")) < 1300


def test_models_differ_and_memory_ops_stay_well_under_100_ms():
    f = fleet()
    t0 = quiet_hour(f, "slow_provider")
    points = f.points(t0, t0 + HOUR, MINUTE)
    large = np.median(values(points, "llm_call_ms", model="m-large"))
    fast = np.median(values(points, "llm_call_ms", model="i-fast"))
    assert large > 4 * fast
    assert np.percentile(values(points, "memory_op_ms"), 99) < 60


def test_a_slow_tool_is_about_five_times_slower_during_its_episode():
    f = fleet()
    e = first_episode(f, "slow_tool")
    during = values(f.points(e.start, e.end, 10), "tool_execution_ms", tool=e.target)
    before = values(f.points(e.start - HOUR, e.start, 10), "tool_execution_ms", tool=e.target)
    assert 3.5 < np.median(during) / np.median(before) < 7


def test_the_leaking_agent_passes_100_mb_by_the_end_of_its_episode():
    f = fleet()
    e = first_episode(f, "memory_leak")

    def memory(t0: float, t1: float) -> np.ndarray:
        return np.array(
            [
                p["value"]
                for p in f.points(t0, t1, MINUTE)
                if p["metric"] == "agent_memory_bytes" and p["agent"] == e.target
            ]
        )

    before, at_end = memory(e.start - HOUR, e.start), memory(e.end - 5 * MINUTE, e.end)
    assert len(before) and before.max() < 100e6
    assert len(at_end) and at_end.min() > 100e6
    others = values(f.points(e.end - 5 * MINUTE, e.end, MINUTE), "agent_memory_bytes")
    assert 10e6 < np.median(others) < 100e6


def test_active_agents_counts_the_live_agents_of_each_node_as_they_leave_and_join():
    f = fleet()
    points = f.points(MIDNIGHT, MIDNIGHT + 6 * HOUR, MINUTE)
    live = defaultdict(set)
    for p in points:
        if p["metric"] == "agent_memory_bytes":
            live[p["node"], p["ts"]].add(p["agent"])
    active = {(p["node"], p["ts"]): p["value"] for p in points if p["metric"] == "active_agents"}
    assert len(active) == 3 * 6 * 60
    assert all(value == len(live[key]) for key, value in active.items())
    assert len(set(active.values())) > 1  # agents left and came back


def test_the_fleet_grows_a_few_percent_a_day():
    f = fleet(agents=300)

    def active(t: float) -> float:
        return sum(p["value"] for p in f.points(t, t + MINUTE, MINUTE) if p["metric"] == "active_agents")

    assert 0.6 < active(f.full_at - 14 * DAY) / active(f.full_at) < 0.72


def test_afternoons_are_busier_than_nights():
    f = fleet()

    def events(hour: int) -> int:
        t0 = MIDNIGHT + hour * HOUR
        return sum(p["metric"] not in GAUGES for p in f.points(t0, t0 + 10 * MINUTE))

    assert events(15) > 2 * events(3)


def test_sampled_backfill_keeps_the_sums_of_counters():
    f = fleet()
    t0 = quiet_hour(f, "slow_provider")
    live = values(f.points(t0, t0 + HOUR), "tokens_total").sum()
    sampled = f.points(t0, t0 + HOUR, MINUTE, sample=1 / 15)
    assert len(sampled) < len(f.points(t0, t0 + HOUR)) / 5
    assert values(sampled, "tokens_total").sum() == pytest.approx(live, rel=0.1)


def test_tokens_come_by_type_most_of_them_input():
    f = fleet()
    t0 = quiet_hour(f, "slow_provider")
    points = f.points(t0, t0 + HOUR)
    given, taken = values(points, "tokens_total", type="input"), values(points, "tokens_total", type="output")
    assert len(given) == len(taken) > 0
    assert given.sum() + taken.sum() == values(points, "tokens_total").sum()
    assert given.sum() / (given.sum() + taken.sum()) == pytest.approx(0.75, abs=0.01)


def test_a_long_backfill_gets_a_coarser_step():
    assert backfill_step(200, 2 * HOUR) == MINUTE
    assert backfill_step(1000, 14 * DAY) > 30 * MINUTE
    assert backfill_step(200, 14 * DAY) % MINUTE == 0


# --- versions and variants ---------------------------------------------------------------------

LATENCIES = ("agent_response_ms", "tool_execution_ms", "llm_call_ms", "memory_op_ms")


def release(agents: int = 40, **kw) -> Fleet:
    return Fleet(agents, 3, 7, full_at=MIDNIGHT + DAY, version="1.3.0", variants=("a", "b"), **kw)


def test_without_a_version_or_variants_no_point_carries_either():
    points = fleet().points(MIDNIGHT, MIDNIGHT + 30)
    assert not any({"version", "variant"} & set(p.get("tags", {})) for p in points)


def test_a_version_tags_every_point_and_variants_split_the_agents_by_index():
    f = release()
    assert np.bincount(f.variant_of).tolist() == [20, 20]
    points = f.points(MIDNIGHT, MIDNIGHT + 60)
    variant_of = {}
    for p in points:
        tags = p["tags"]
        assert tags["version"] == "1.3.0"
        if p["agent"] == "collector":  # the node's own gauge runs no variant
            assert tags == {"version": "1.3.0"}
            continue
        variant_of.setdefault(p["agent"], set()).add(tags["variant"])
        assert tags["variant"] == "ab"[int(p["agent"].split("-")[1]) % 2]
    assert len(variant_of) > 30 and all(len(v) == 1 for v in variant_of.values())
    tools = [p for p in points if p["metric"] == "tool_execution_ms"]
    assert all(set(p["tags"]) == {"tool", "version", "variant"} for p in tools)


def test_a_slowdown_makes_only_its_variants_latencies_slower_by_its_factor():
    t0 = MIDNIGHT + 15 * HOUR
    plain = fleet().points(t0, t0 + 60)
    slowed = release(slowdown={"b": 1.15}).points(t0, t0 + 60)
    assert len(plain) == len(slowed)
    for before, after in zip(plain, slowed, strict=True):
        factor = 1.15 if after.get("tags", {}).get("variant") == "b" else 1.0
        if after["metric"] in LATENCIES and before["value"] < 30_000:  # a timeout stays 30 s
            assert after["value"] == pytest.approx(min(30_000, before["value"] * factor), abs=0.02)
        else:
            assert after["value"] == before["value"]


def test_the_slower_variants_medians_are_15_percent_higher():
    f = release(agents=100, slowdown={"b": 1.15})
    t0 = MIDNIGHT + 15 * HOUR
    points = f.points(t0, t0 + 10 * MINUTE)
    # One kind each: a mixture's median sits between its kinds' humps, where few values fall.
    kinds = [
        ("agent_response_ms", {}),
        ("tool_execution_ms", {"tool": "web_search"}),
        ("llm_call_ms", {"model": "m-large"}),
        ("memory_op_ms", {"op": "read"}),
    ]
    for metric, kind in kinds:
        a, b = values(points, metric, variant="a", **kind), values(points, metric, variant="b", **kind)
        assert min(a.size, b.size) > 3000, metric
        assert np.median(b) / np.median(a) == pytest.approx(1.15, abs=0.05), metric


def test_a_slowdown_naming_the_version_makes_every_agents_latencies_slower():
    t0 = MIDNIGHT + 15 * HOUR
    plain = release().points(t0, t0 + 60)
    slowed = release(slowdown={"1.3.0": 1.1, "b": 1.15}).points(t0, t0 + 60)
    for before, after in zip(plain, slowed, strict=True):
        factor = 1.1 * (1.15 if after.get("tags", {}).get("variant") == "b" else 1.0)
        if after["metric"] in LATENCIES and before["value"] < 27_000:
            assert after["value"] == pytest.approx(min(30_000, before["value"] * factor), abs=0.02)


def test_a_slowdown_naming_an_agent_makes_only_its_latencies_slower():
    t0 = MIDNIGHT + 15 * HOUR
    plain = release().points(t0, t0 + 60)
    slowed = release(slowdown={"agent-3": 1.6}).points(t0, t0 + 60)
    for before, after in zip(plain, slowed, strict=True):
        factor = 1.6 if after["agent"] == "agent-3" else 1.0
        if after["metric"] in LATENCIES and before["value"] < 18_000:
            assert after["value"] == pytest.approx(before["value"] * factor, abs=0.02)


def test_a_slowdown_must_name_a_variant_the_version_or_an_agent():
    with pytest.raises(ValueError, match="neither a variant, the version nor an agent: c"):
        release(slowdown={"c": 1.15})


# --- against the real server ----------------------------------------------------------------


def simulate(url: str, token: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "collectors", "simulate", "--url", url, "--token", token, *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def summary(run: subprocess.CompletedProcess) -> dict[str, int]:
    """The counts in the summary line, e.g. {"sent": 1234, "backfill": ..., "retries": 0}."""
    found = re.search(
        r"^sent (?P<sent>[\d,]+) points .*\(backfill (?P<backfill>[\d,]+) \+ live (?P<live>[\d,]+)\)"
        r".* (?P<retries>[\d,]+) retries",
        run.stdout,
        re.M,
    )
    assert found, run.stdout + run.stderr
    return {k: int(v.replace(",", "")) for k, v in found.groupdict().items()}


def wait_until_stored(token: ApiToken, sent: int) -> None:
    def stored() -> int:
        return IngestedBatch.objects.filter(token=token).aggregate(n=Sum("points"))["n"] or 0

    wait_until(lambda: stored() == sent, 20, f"{sent} points stored")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics_point")
        assert cur.fetchone()[0] == sent


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_backfills_and_streams_to_the_real_server_and_everything_sent_is_stored(
    live_server_url, celery_worker, clean_tables
):
    token, raw = ApiToken.issue("sim", ["ingest"])
    run = simulate(
        live_server_url,
        raw,
        *("--agents", "20", "--nodes", "2", "--duration", "3", "--backfill", "1h"),
        *("--version", "1.3.0", "--previous-version", "1.2.0", "--deployed-ago", "20m"),
        *("--deploy-event", "1.3.0"),
    )
    assert run.returncode == 0, run.stderr
    counts = summary(run)
    assert counts["backfill"] > 0 and counts["live"] > 0
    wait_until_stored(token, counts["sent"])
    memory = Series.objects.filter(metric="agent_memory_bytes")
    assert set(memory.values_list("agent", flat=True)) >= {f"agent-{i}" for i in range(20)}
    nodes = Series.objects.filter(metric="active_agents").values_list("node", flat=True)
    assert set(nodes) >= {"node-0", "node-1"}
    # The history ran the release before until the deploy 20 minutes ago, the new one since;
    # the marker is where the versions switch.
    deploy = Event.objects.get(kind="deploy")
    assert deploy.tags == {"version": "1.3.0"}
    cut = deploy.ts.timestamp()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT s.tags->>'version', min(extract(epoch FROM p.ts)), max(extract(epoch FROM p.ts)) "
            "FROM metrics_point p JOIN metrics_series s ON s.id = p.series_id "
            "WHERE s.metric = 'agent_response_ms' GROUP BY 1"
        )
        spans = {v: (float(lo), float(hi)) for v, lo, hi in cur.fetchall()}
    assert set(spans) == {"1.2.0", "1.3.0"}
    assert spans["1.2.0"][1] < cut <= spans["1.3.0"][0]
    assert cut == pytest.approx(time.time() - 20 * 60, abs=120)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_over_the_rate_limit_it_waits_retries_and_stores_every_batch_once(
    tmp_path, celery_worker, clean_tables
):
    # 1000 points/s against a backfill of at least ~2800 points in 500-point batches, sent
    # within a fraction of a second: some second must go over the limit.
    server, url = start_server(tmp_path, INGEST_RATE_LIMIT="1000")
    token, raw = ApiToken.issue("sim", ["ingest"])
    try:
        run = simulate(
            url,
            raw,
            "--agents",
            "10",
            "--nodes",
            "1",
            "--duration",
            "1",
            "--backfill",
            "1h",
            "--batch-size",
            "500",
        )
    finally:
        server.kill()
    assert run.returncode == 0, run.stderr
    counts = summary(run)
    assert counts["retries"] > 0
    wait_until_stored(token, counts["sent"])


@pytest.mark.slow
def test_a_rejected_token_stops_it_with_the_servers_message(live_server_url):
    run = simulate(live_server_url, "pd_not_a_token", "--agents", "5", "--nodes", "1", "--duration", "5")
    assert run.returncode == 1
    assert "HTTP 401" in run.stderr
    assert "invalid or revoked token" in run.stderr
    assert re.search(r"^sent 0 points", run.stdout, re.M)


def test_a_fleet_without_episodes_has_none_and_one_given_episodes_has_exactly_those():
    t0 = MIDNIGHT + 10 * HOUR
    assert Fleet(20, 2, 7, full_at=MIDNIGHT + DAY, episodes=[]).episodes(t0 - 7 * DAY, t0) == []
    slow = Episode("slow_tool", t0 + 600, t0 + 1800, "web_search", 3)  # TOOLS.names("tool")[3]
    fleet = Fleet(20, 2, 7, full_at=MIDNIGHT + DAY, episodes=[slow])
    assert fleet.episodes(t0, t0 + HOUR) == [slow] and fleet.episodes(t0 + 2 * HOUR, t0 + 3 * HOUR) == []
    calm = Fleet(20, 2, 7, full_at=MIDNIGHT + DAY, episodes=[])
    during = [
        p["value"] for p in fleet.points(t0 + 900, t0 + 960) if p.get("tags", {}).get("tool") == "web_search"
    ]
    before = [
        p["value"] for p in calm.points(t0 + 900, t0 + 960) if p.get("tags", {}).get("tool") == "web_search"
    ]
    assert np.median(during) > 2 * np.median(before)  # the slow tool is slower while its episode runs


def test_scheduled_episodes_shift_their_metrics_from_the_time_given_as_bench_detect_needs():
    t0 = MIDNIGHT + 14 * HOUR
    slow = Episode("slow_provider", t0 + 30 * MINUTE, t0 + 60 * MINUTE, "globex", 1)  # PROVIDERS[1]
    leak = Episode("memory_leak", t0 + 30 * MINUTE, t0 + 90 * MINUTE, "agent-5", 5)
    f = Fleet(40, 3, 7, full_at=MIDNIGHT + DAY, episodes=[slow, leak])
    points = f.points(t0, t0 + 90 * MINUTE, MINUTE, 1 / 15)  # sampled as the backfill is

    def part(start: float, end: float, metric: str, **match: str) -> np.ndarray:
        return values([p for p in points if start <= p["ts"] < end], metric, **match)

    before, during, after = (t0, slow.start), (slow.start, slow.end), (slow.end, slow.end + 30 * MINUTE)
    globex = [np.median(part(*w, "llm_call_ms", provider="globex")) for w in (before, during, after)]
    assert 3 < globex[1] / globex[0] < 5.5 and 0.8 < globex[2] / globex[0] < 1.25
    acme = [np.median(part(*w, "llm_call_ms", provider="acme")) for w in (before, during)]
    assert 0.8 < acme[1] / acme[0] < 1.25  # only the provider named
    responses = [np.median(part(*w, "agent_response_ms")) for w in (before, during, after)]
    assert 1.5 < responses[1] / responses[0] < 2.2 and 0.8 < responses[2] / responses[0] < 1.25

    memory = [p for p in points if p["metric"] == "agent_memory_bytes" and p["agent"] == "agent-5"]
    quiet = [p["value"] for p in memory if p["ts"] < leak.start]
    assert quiet and max(quiet) < 100e6
    leaking = [p["value"] for p in memory if leak.start + 5 * MINUTE <= p["ts"] < leak.end]
    assert len(leaking) >= 50 and min(leaking) > max(quiet)  # it grows from its start on
    assert max(leaking) > max(quiet) + 140e6  # nearly LEAK_BYTES by its end


def test_the_cli_runs_without_episodes():
    from collectors.simulate.cli import parse_args

    assert parse_args(["--dry-run", "--episodes", "none"]).episodes == "none"
    assert parse_args(["--dry-run"]).episodes == "random"


def test_a_leak_asked_for_starts_its_delay_after_the_start_besides_the_seeds_episodes():
    from collectors.simulate.cli import _also, parse_args

    args = parse_args(["--dry-run", "--agents", "40", "--leak", "agent-5=5m"])
    t0 = MIDNIGHT + 14 * HOUR
    [leak] = _also(args, t0)
    assert (leak.kind, leak.target, leak.index, leak.start, leak.end) == (
        "memory_leak",
        "agent-5",
        5,
        t0 + 300,
        t0 + 300 + 2 * HOUR,
    )
    random = Fleet(40, 3, 7, full_at=MIDNIGHT + DAY)
    both = Fleet(40, 3, 7, full_at=MIDNIGHT + DAY, also=[leak])
    assert both.episodes(t0 - DAY, t0 + DAY) == sorted(
        [*random.episodes(t0 - DAY, t0 + DAY), leak], key=lambda e: e.start
    )
    memory = {
        p["ts"]: p["value"]
        for p in both.points(t0, t0 + 30 * MINUTE, MINUTE)
        if p["metric"] == "agent_memory_bytes" and p["agent"] == "agent-5"
    }
    calm = {
        p["ts"]: p["value"]
        for p in random.points(t0, t0 + 30 * MINUTE, MINUTE)
        if p["metric"] == "agent_memory_bytes" and p["agent"] == "agent-5"
    }
    added = {ts: memory[ts] - calm[ts] for ts in memory}
    assert all(v == 0 for ts, v in added.items() if ts < leak.start)
    assert 15e6 < added[max(added)] < 40e6  # about 160 MB over 2 h, 24 min in


def test_cache_lookups_hit_more_for_some_tools_than_others():
    points = fleet().points(MIDNIGHT + 15 * HOUR, MIDNIGHT + 16 * HOUR)

    def rate(tool: str) -> float:
        hits = values(points, "cache_hits_total", tool=tool).sum()
        return hits / (hits + values(points, "cache_misses_total", tool=tool).sum())

    assert rate("calculator") > 0.9 > 0.75 > rate("web_search")
    assert {"tool", "model", "provider"} <= set(
        next(p for p in points if p["metric"] == "cache_hits_total")["tags"]
    )
