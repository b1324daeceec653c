"""A small fleet whose points were stored through the ingest path: two versions on agents of
their own, two variants on every agent, and a deploy that made LLM calls slower."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

NOW = time.time()
DEPLOY = NOW - 1500  # llm_call_ms is 30 % slower from here on
AGENTS = 10


def tags(**kw: str) -> str:
    return orjson.dumps(kw, option=orjson.OPT_SORT_KEYS).decode()


@pytest.fixture
def fleet(db) -> None:
    """Over the last 50 minutes, 10 agents on 2 nodes: agent_response_ms from version 1.2.0
    on agents 0-4 and 1.3.0 (30 % slower) on agents 5-9, each point of variant a or b (the
    same); and llm_call_ms 30 % slower after DEPLOY."""
    rng = np.random.default_rng(1)
    token = ApiToken.issue("fleet", ["ingest"])[0]
    series = [
        (
            "agent_response_ms",
            f"node-{a % 2}",
            f"agent-{a}",
            tags(version="1.2.0" if a < 5 else "1.3.0", variant=v),
        )
        for a in range(AGENTS)
        for v in "ab"
    ]
    series += [("llm_call_ms", f"node-{a % 2}", f"agent-{a}", tags(model="m-large")) for a in range(AGENTS)]
    n = 8000
    idx = rng.integers(0, 2 * AGENTS, n).astype(np.int32)
    ts = NOW - rng.uniform(30, 3000, n)
    values = 900 * np.exp(0.45 * rng.standard_normal(n)) * np.where(idx // 2 >= 5, 1.3, 1.0)
    llm_idx = rng.integers(2 * AGENTS, 3 * AGENTS, n).astype(np.int32)
    llm_ts = NOW - rng.uniform(30, 3000, n)
    llm = 1500 * np.exp(0.45 * rng.standard_normal(n)) * np.where(llm_ts >= DEPLOY, 1.3, 1.0)
    batch = Batch(
        "fleet",
        series,
        np.concatenate([idx, llm_idx]),
        np.concatenate([ts, llm_ts]),
        np.round(np.concatenate([values, llm]), 2),
    )
    assert IngestedBatch.store(token.id, batch, now=NOW)


@pytest.fixture
def tools(db) -> None:
    """Over the last 50 minutes, tool_execution_ms of three tools on 6 agents: `search` 40 %
    slower after DEPLOY, `fetch` unchanged, `rare` with too few calls to compare."""
    rng = np.random.default_rng(2)
    token = ApiToken.issue("tools", ["ingest"])[0]
    names = ("search", "fetch", "rare")
    series = [
        ("tool_execution_ms", f"node-{a % 2}", f"agent-{a}", tags(tool=t)) for t in names for a in range(6)
    ]
    n = 9000
    idx = rng.choice(len(series), n, p=[0.5 / 6] * 6 + [0.495 / 6] * 6 + [0.005 / 6] * 6).astype(np.int32)
    ts = NOW - rng.uniform(30, 3000, n)
    slower = (idx < 6) & (ts >= DEPLOY)
    values = 200 * np.exp(0.4 * rng.standard_normal(n)) * np.where(slower, 1.4, 1.0)
    assert IngestedBatch.store(token.id, Batch("tools", series, idx, ts, np.round(values, 2)), now=NOW)
