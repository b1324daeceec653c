"""A fleet with one slow agent and one fat one, stored through the ingest path."""

from __future__ import annotations

import importlib
import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

NOW = time.time()


@pytest.fixture
def peers(db) -> None:
    """Over the last 10 minutes, 24 agents on 2 nodes, 60 responses each; agent-5 (node-1)
    80 % slower, and agent-8's memory 3x its peers'."""
    rng = np.random.default_rng(4)
    token = ApiToken.issue("fleet", ["ingest"])[0]
    series = [("agent_response_ms", f"node-{a % 2}", f"agent-{a}", "{}") for a in range(24)]
    series += [("agent_memory_bytes", f"node-{a % 2}", f"agent-{a}", "{}") for a in range(24)]
    idx = np.repeat(np.arange(24), 60).astype(np.int32)
    values = 900 * np.exp(0.3 * rng.standard_normal(len(idx))) * np.where(idx == 5, 1.8, 1.0)
    mem_idx = np.repeat(np.arange(24, 48), 5).astype(np.int32)
    mem = 50e6 * rng.uniform(0.95, 1.05, len(mem_idx)) * np.where(mem_idx == 24 + 8, 3.0, 1.0)
    ts = NOW - rng.uniform(30, 600, len(idx) + len(mem_idx))
    batch = Batch(
        "fleet", series, np.concatenate([idx, mem_idx]), ts, np.round(np.concatenate([values, mem]), 2)
    )
    assert IngestedBatch.store(token.id, batch, now=NOW)


@pytest.fixture
def seeded(db) -> None:
    """The seeded SLOs and their burn-rate rules, as the migrations make them: a transactional
    test before this one flushes every table, seeds included."""
    from django.apps import apps

    for module in (
        "perfdash.detect.migrations.0002_default_slos",
        "perfdash.alerts.migrations.0013_default_burn_rules",
    ):
        importlib.import_module(module).seed(apps, None)


LEAK_FROM_S = 300  # the leak started five minutes before NOW


@pytest.fixture
def leaking(db) -> None:
    """Over the last 15 minutes, the memory of 24 agents on 2 nodes read every 10 s: each
    30-70 MB, drifting up or down by up to 0.1 %/min, with 0.5 % noise; agent-3 (node-1), at
    40 MB, has leaked 2 MB/min for the last five minutes (10 MB so far: still within its peers'
    levels)."""
    rng = np.random.default_rng(7)
    token = ApiToken.issue("fleet", ["ingest"])[0]
    series = [("agent_memory_bytes", f"node-{a % 2}", f"agent-{a}", "{}") for a in range(24)]
    ts = NOW - np.arange(0, 900, 10.0)
    base = rng.uniform(30e6, 70e6, 24)
    base[3] = 40e6
    drift = rng.uniform(-0.001, 0.001, 24) * base  # per minute
    minutes = (ts - NOW) / 60
    values = base[:, None] * (1 + 0.005 * rng.standard_normal((24, len(ts)))) + drift[:, None] * minutes
    values[3] += 2e6 * np.maximum(0.0, ts - (NOW - LEAK_FROM_S)) / 60
    idx = np.repeat(np.arange(24), len(ts)).astype(np.int32)
    batch = Batch("fleet", series, idx, np.tile(ts, 24), np.round(values.ravel()))
    assert IngestedBatch.store(token.id, batch, now=NOW)
