"""The mapping table, row by row, against the GenAI semantic conventions' own names (taken from
the `opentelemetry-semantic-conventions` package, not typed here), old names included."""

from __future__ import annotations

import time

import orjson
import pytest
from opentelemetry.semconv._incubating.attributes import error_attributes as err
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm

from perfdash.ingest.validate import Limits
from perfdash.otlp import conventions, wire
from perfdash.otlp.receive import identity
from perfdash.otlp.translate import Translator
from tests.otlp.conftest import Sdk

OP = ga.GenAiOperationNameValues
OPERATION = ga.GEN_AI_OPERATION_NAME
DURATION = gm.GEN_AI_CLIENT_OPERATION_DURATION
LLM = {ga.GEN_AI_PROVIDER_NAME: "openai", ga.GEN_AI_REQUEST_MODEL: "gpt-4o"}
LLM_TAGS = {"provider": "openai", "model": "gpt-4o"}
DIMENSIONS = ("tool", "model", "provider", "op", "version", "variant")


def translate(
    metric: str, attrs: dict, unit: str = "s", settings=None, value: float = 0.2, **resource
) -> list:
    """(metric, node, agent, tags) of each series one recorded value becomes."""
    sdk = Sdk("delta", **{"gen_ai.agent.id": "agent-1", **resource})
    sdk.meter.create_histogram(metric, unit=unit).record(value, attrs)

    request = wire.decode(sdk.collect(), wire.PROTOBUF)
    t = Translator(1, identity(), Limits(), ("tool", "model", "provider", "op", "version", "variant"), _now())
    points = t.request(request)
    return [
        (o.series[0], o.series[1], o.series[2], orjson.loads(o.series[3]), o.keep)
        for outputs in points.outputs
        for o in outputs
    ]


def _now() -> float:
    return time.time()


@pytest.mark.parametrize("op", [OP.CHAT, OP.TEXT_COMPLETION, OP.GENERATE_CONTENT, OP.EMBEDDINGS])
def test_an_llm_operation_s_duration_is_llm_call_ms_by_provider_and_model(db, op):
    [(metric, _, _, tags, keep)] = translate(DURATION, {OPERATION: op.value, **LLM})
    assert (metric, tags, keep) == ("llm_call_ms", LLM_TAGS, "histogram")


def test_the_older_attribute_names_fill_the_same_tags(db):
    attrs = {
        OPERATION: "chat",
        ga.GEN_AI_SYSTEM: "anthropic",
        ga.GEN_AI_RESPONSE_MODEL: "claude",
    }
    [(metric, _, _, tags, _)] = translate(DURATION, attrs)
    assert (metric, tags) == ("llm_call_ms", {"provider": "anthropic", "model": "claude"})


def test_the_request_model_wins_over_the_response_model(db):
    attrs = {
        OPERATION: "chat",
        ga.GEN_AI_REQUEST_MODEL: "asked",
        ga.GEN_AI_RESPONSE_MODEL: "got",
    }
    assert translate(DURATION, attrs)[0][3]["model"] == "asked"


TOOL = OP.EXECUTE_TOOL.value


@pytest.mark.parametrize(
    "metric, attrs, want",
    [
        (
            DURATION,
            {OPERATION: TOOL, ga.GEN_AI_TOOL_NAME: "web_search"},
            ("tool_execution_ms", {"tool": "web_search"}),
        ),
        (
            "gen_ai.execute_tool.duration",
            {ga.GEN_AI_TOOL_NAME: "calc"},
            ("tool_execution_ms", {"tool": "calc"}),
        ),
        (DURATION, {OPERATION: OP.INVOKE_AGENT.value}, ("agent_response_ms", {})),
        ("gen_ai.invoke_agent.duration", {}, ("agent_response_ms", {})),
        (DURATION, {OPERATION: OP.RETRIEVAL.value}, ("memory_op_ms", {"op": "retrieval"})),
        (gm.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, LLM, ("llm_time_to_first_token_ms", LLM_TAGS)),
        (gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, LLM, ("llm_time_to_first_token_ms", LLM_TAGS)),
    ],
    ids=[
        "execute_tool",
        "execute_tool.duration",
        "invoke_agent",
        "invoke_agent.duration",
        "retrieval",
        "ttft",
        "ttfc",
    ],
)
def test_each_row_of_the_table(db, metric, attrs, want):
    [(got_metric, _, _, tags, keep)] = translate(metric, attrs)
    assert (got_metric, tags, keep) == (*want, "histogram")


def test_token_usage_is_a_counter_of_the_histogram_s_sum(db):
    attrs = {**LLM, ga.GEN_AI_TOKEN_TYPE: ga.GenAiTokenTypeValues.INPUT.value}
    [(metric, _, _, tags, keep)] = translate(gm.GEN_AI_CLIENT_TOKEN_USAGE, attrs, unit="{token}")
    assert (metric, tags, keep) == (
        "tokens_total",
        {"provider": "openai", "model": "gpt-4o", "type": "input"},
        "sum",
    )


def test_an_error_type_also_counts_an_error(db):
    attrs = {OPERATION: "chat", **LLM, err.ERROR_TYPE: "timeout"}
    rows = translate(DURATION, attrs)
    assert [(m, t, k) for m, _, _, t, k in rows] == [
        ("llm_call_ms", LLM_TAGS, "histogram"),
        ("errors_total", {"provider": "openai", "model": "gpt-4o", "error": "timeout"}, "count"),
    ]


def test_an_operation_outside_the_table_keeps_its_own_name_and_attributes(db):
    [(metric, _, _, tags, _)] = translate(DURATION, {OPERATION: "create_agent"})
    assert (metric, tags) == (
        "gen_ai.client.operation.duration_ms",
        {"gen_ai.operation.name": "create_agent"},
    )


@pytest.mark.parametrize(
    "name, unit, counter, want",
    [
        ("http.server.request.duration", "s", False, "http.server.request.duration_ms"),
        ("Process.Memory-Usage", "By", False, "process.memory_usage_bytes"),
        ("rpc.latency_ms", "ms", False, "rpc.latency_ms"),
        ("requests", "{request}", True, "requests_total"),
        ("bytes.sent", "By", True, "bytes.sent_bytes_total"),
        ("9lives", "1", False, "_9lives"),
    ],
)
def test_other_names_are_normalised(name, unit, counter, want):
    assert conventions.metric_name(name, unit, counter) == want


def test_node_and_agent_come_from_the_resource_or_the_data_point(db):
    [(_, node, agent, tags, _)] = translate(
        "work", {"host.name": "node-from-point", "colour": "red"}, unit="1"
    )
    assert (node, agent, tags) == ("node-from-point", "agent-1", {"colour": "red"})


def test_the_service_version_is_the_version_tag(db):
    [(_, _, _, tags, _)] = translate("work", {}, unit="1", **{"service.version": "1.3.0"})
    assert tags == {"version": "1.3.0"}


def test_attributes_over_the_tag_limit_are_dropped_and_counted_keeping_the_dimensions(db):
    attrs = {f"a{i:02}": "x" for i in range(20)} | {
        OPERATION: "execute_tool",
        ga.GEN_AI_TOOL_NAME: "t",
    }
    [(metric, _, _, tags, _)] = translate(DURATION, attrs)
    assert metric == "tool_execution_ms" and len(tags) == 16 and tags["tool"] == "t"
