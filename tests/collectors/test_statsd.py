"""StatsD / DogStatsD parsing: what each line becomes, and that nothing malformed gets through."""

from __future__ import annotations

import pytest

from collectors.agent.statsd import StatsdPoint, parse


def points(datagram: bytes) -> list[StatsdPoint]:
    parsed = parse(datagram)
    assert parsed.errors == [], parsed.errors
    return parsed.points


def test_a_timer_becomes_a_latency_metric_in_ms():
    assert points(b"agent.response:120.5|ms") == [StatsdPoint("agent_response_ms", 120.5, {})]


@pytest.mark.parametrize("kind", ["ms", "h", "d"])
def test_timers_histograms_and_distributions_all_get_the_ms_suffix_once(kind: str):
    assert points(f"llm-call:3|{kind}".encode())[0].metric == "llm_call_ms"
    assert points(f"llm.call_ms:3|{kind}".encode())[0].metric == "llm_call_ms"


def test_a_counter_gets_the_total_suffix_once():
    assert points(b"tokens:350|c") == [StatsdPoint("tokens_total", 350.0, {})]
    assert points(b"cache.hits_total:1|c")[0].metric == "cache_hits_total"


def test_a_gauge_keeps_its_name():
    assert points(b"agent.memory.bytes:1048576|g") == [StatsdPoint("agent_memory_bytes", 1048576.0, {})]


def test_dogstatsd_tags_become_tags_except_agent_and_node_which_say_whose_point_it_is():
    [p] = points(b"tool.execution:812|ms|#tool:web_search,agent:agent-17,node:node-3")
    assert p == StatsdPoint(
        "tool_execution_ms", 812.0, {"tool": "web_search"}, agent="agent-17", node="node-3"
    )


def test_tag_values_may_hold_colons_and_tag_keys_lose_their_dashes():
    [p] = points(b"requests:1|c|#url:http://x:80/a,service-name:web")
    assert p.tags == {"url": "http://x:80/a", "service_name": "web"}


def test_a_bare_tag_is_left_out_but_the_point_is_kept():
    [p] = points(b"requests:1|c|#urgent,tool:calc")
    assert p.tags == {"tool": "calc"}


def test_a_sampled_counter_is_scaled_up_by_its_rate():
    assert points(b"tokens:3|c|@0.1")[0].value == pytest.approx(30.0)


def test_a_sampled_timer_is_one_measurement_whatever_the_rate():
    assert points(b"agent.response:40|ms|@0.5")[0].value == 40.0


def test_several_lines_and_several_values_per_line():
    got = points(b"a:1|c\nb:2:3:4|ms\r\n\nc:-5|g\n")
    assert [(p.metric, p.value) for p in got] == [
        ("a_total", 1.0),
        ("b_ms", 2.0),
        ("b_ms", 3.0),
        ("b_ms", 4.0),
        ("c", -5.0),
    ]


def test_a_dogstatsd_timestamp_is_the_points_time_and_origin_fields_are_skipped():
    [p] = points(b"queue.depth:7|g|#agent:a1|c:ci-abc123|e:it-false|card:low|T1764000000")
    assert (p.ts, p.agent, p.tags) == (1764000000.0, "a1", {})


def test_sets_events_and_service_checks_are_ignored_not_errors():
    parsed = parse(b"users:alice|s\n_e{5,4}:title|text\n_sc|db.up|0\nok:1|c")
    assert (parsed.ignored, parsed.errors, len(parsed.points)) == (3, [], 1)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"no_value", "expected name:value|type"),
        (b"no_type:1", "expected name:value|type"),
        (b":1|c", "expected name:value|type"),
        (b"empty:|c", "expected name:value|type"),
        (b"x:1|zz", "unknown metric type 'zz'"),
        (b"x:abc|c", "value is not a number"),
        (b"x:nan|g", "value is not a number"),
        (b"x:inf|ms", "value is not a number"),
        (b"x:1e999|g", "value is too large"),
        (b"x:1::2|ms", "value is not a number"),
        (b"x:1|c|@0", "sample rate must be more than 0 and at most 1"),
        (b"x:1|c|@2", "sample rate must be more than 0 and at most 1"),
        (b"x:1|c|@often", "sample rate is not a number"),
        (b"x:1|g|Tnow", "timestamp is not a number"),
        (b"x:1|g|weird", "unknown field after the type"),
        (b"x:\xff\xfe|c", "line is not UTF-8"),
    ],
)
def test_a_malformed_line_is_an_error_and_the_good_lines_around_it_still_count(line: bytes, problem: str):
    parsed = parse(b"before:1|c\n" + line + b"\nafter:2|c")
    assert [e.problem for e in parsed.errors] == [problem]
    assert [p.metric for p in parsed.points] == ["before_total", "after_total"]


def test_an_empty_datagram_is_nothing():
    parsed = parse(b"")
    assert (parsed.points, parsed.errors, parsed.ignored) == ([], [], 0)
