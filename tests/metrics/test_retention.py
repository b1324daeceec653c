"""Raw points and rollups expire by dropping whole daily partitions."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import partitions
from perfdash.metrics.batch import Batch
from perfdash.metrics.tasks import enforce_retention

SERIES = [("agent_response_ms", "node-1", "agent-1", "{}")]


def store_at(token_id: int, name: str, ts: float, n: int = 10) -> None:
    IngestedBatch.store(token_id, Batch(name, SERIES, np.zeros(n, np.int32), np.full(n, ts), np.full(n, 5.0)))


def raw_count() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics_point")
        return cur.fetchone()[0]


@pytest.fixture
def token(db):
    return ApiToken.issue("r", ["ingest"])[0]


def test_points_older_than_raw_retention_update_only_the_rollups(token, settings):
    settings.RAW_RETENTION_DAYS = 7
    store_at(token.id, "old", time.time() - 10 * 86400)
    assert raw_count() == 0
    with connection.cursor() as cur:
        cur.execute("SELECT sum(count) FROM metrics_rollup_delta")
        assert cur.fetchone()[0] == 30


def test_retention_drops_expired_partitions_and_keeps_recent_ones(token, settings):
    settings.RAW_RETENTION_DAYS = 30  # so the old points are written raw first
    store_at(token.id, "old", time.time() - 9 * 86400)
    store_at(token.id, "new", time.time() - 60)
    assert raw_count() == 20
    settings.RAW_RETENTION_DAYS = 7
    dropped = enforce_retention()
    old_day = (datetime.now(UTC) - timedelta(days=9)).date()
    assert partitions.partition_name("metrics_point", old_day) in dropped["metrics_point"]
    assert raw_count() == 10
    today = datetime.now(UTC).date()
    names = [n for n, _ in partitions.existing("metrics_point")]
    assert partitions.partition_name("metrics_point", today + timedelta(days=1)) in names


def test_partitions_can_be_ensured_concurrently_and_twice(db):
    day = datetime.now(UTC).date() + timedelta(days=3)
    partitions.ensure("metrics_rollup_hour", [day])
    partitions.forget()
    partitions.ensure("metrics_rollup_hour", [day])
    assert partitions.partition_name("metrics_rollup_hour", day) in [
        n for n, _ in partitions.existing("metrics_rollup_hour")
    ]
