"""OTLP metric names and attributes into perfdash's metrics and tags: one table
(docs/otlp.md, "Mapping").

The GenAI semantic conventions name what perfdash's well-known metrics measure: the rows of
`GENAI` say which OTel metric (and which `gen_ai.operation.name`) becomes which perfdash
metric, which tags it gets, and what of a histogram it keeps (the whole histogram, or its sum
as a counter). Every other metric keeps its own name, normalised (`metric_name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The attribute names, as the conventions spell them. Older names are read too.
OPERATION = "gen_ai.operation.name"
PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
MODEL = ("gen_ai.request.model", "gen_ai.response.model")
TOOL = ("gen_ai.tool.name",)
TOKEN_TYPE = ("gen_ai.token.type",)
ERROR = "error.type"

# Which dimension tag each of these fills.
DIMENSIONS = {"provider": PROVIDER, "model": MODEL, "tool": TOOL, "type": TOKEN_TYPE}
# Attributes a mapped metric consumes (they become the tags above, not tags of their own).
CONSUMED = frozenset({OPERATION, ERROR, *PROVIDER, *MODEL, *TOOL, *TOKEN_TYPE})

LLM_OPERATIONS = ("chat", "text_completion", "generate_content", "embeddings")
MEMORY_OPERATIONS = ("retrieval",)


@dataclass(frozen=True)
class Rule:
    """What one OTel metric (with one operation, if `operation` is set) becomes."""

    metric: str  # perfdash's metric
    tags: tuple[str, ...]  # the dimension tags it gets (from DIMENSIONS, or "op")
    keep: str = "histogram"  # "histogram": the values; "sum": the histogram's sum as a counter


_LLM = Rule("llm_call_ms", ("provider", "model"))
_TOOL = Rule("tool_execution_ms", ("tool",))
_AGENT = Rule("agent_response_ms", ())
_MEMORY = Rule("memory_op_ms", ("op",))
_FIRST_TOKEN = Rule("llm_time_to_first_token_ms", ("provider", "model"))

# (OTel metric, gen_ai.operation.name or None for any) -> rule.
GENAI: dict[tuple[str, str | None], Rule] = {
    **{("gen_ai.client.operation.duration", op): _LLM for op in LLM_OPERATIONS},
    ("gen_ai.client.operation.duration", "execute_tool"): _TOOL,
    ("gen_ai.client.operation.duration", "invoke_agent"): _AGENT,
    **{("gen_ai.client.operation.duration", op): _MEMORY for op in MEMORY_OPERATIONS},
    ("gen_ai.execute_tool.duration", None): _TOOL,
    ("gen_ai.invoke_agent.duration", None): _AGENT,
    ("gen_ai.client.token.usage", None): Rule("tokens_total", ("provider", "model", "type"), keep="sum"),
    ("gen_ai.server.time_to_first_token", None): _FIRST_TOKEN,
    ("gen_ai.client.operation.time_to_first_chunk", None): _FIRST_TOKEN,
}
# A mapped metric carrying `error.type` also counts its values in errors_total{error}.
ERRORS = "errors_total"

# Unit (UCUM, as OTel sends it) -> (suffix, factor into that suffix's unit).
UNITS = {
    "s": ("_ms", 1000.0),
    "ms": ("_ms", 1.0),
    "us": ("_ms", 1e-3),
    "ns": ("_ms", 1e-6),
    "min": ("_ms", 60_000.0),
    "By": ("_bytes", 1.0),
    "KiBy": ("_bytes", 1024.0),
    "MiBy": ("_bytes", 1024.0**2),
    "GiBy": ("_bytes", 1024.0**3),
    "kBy": ("_bytes", 1e3),
    "MBy": ("_bytes", 1e6),
    "GBy": ("_bytes", 1e9),
}
_NOT_NAME = re.compile(r"[^a-z0-9_.]")


def rule_for(name: str, attributes: dict[str, str]) -> Rule | None:
    rule = GENAI.get((name, None))
    if rule is None and OPERATION in attributes:
        rule = GENAI.get((name, attributes[OPERATION]))
    return rule


def unit_of(unit: str) -> tuple[str, float]:
    """(suffix, factor) of an OTel unit; no suffix and factor 1 for one perfdash does not convert."""
    return UNITS.get(unit, ("", 1.0))


def metric_name(name: str, unit: str, counter: bool) -> str:
    """A metric outside the conventions: lower-cased, characters outside the metric-name
    rules as `_`, its unit as a suffix, `_total` for a counter."""
    out = _NOT_NAME.sub("_", name.lower())
    if out[:1].isdigit():
        out = "_" + out
    suffix = unit_of(unit)[0]
    if suffix and not out.endswith(suffix):
        out += suffix
    if counter and not out.endswith("_total"):
        out += "_total"
    return out


def dimension_value(tag: str, attributes: dict[str, str]) -> str | None:
    if tag == "op":
        return attributes.get(OPERATION)
    for name in DIMENSIONS[tag]:
        if name in attributes:
            return attributes[name]
    return None
