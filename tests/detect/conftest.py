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
