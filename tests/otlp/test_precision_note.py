"""Reads of a metric that came as explicit-bucket histograms say their percentiles are as
precise as the sender's buckets: the read API and the explorer; other metrics say nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch
from perfdash.otlp import models


def stored(db) -> None:
    token = ApiToken.issue("t", ["ingest"])[0]
    series = [(m, "node-1", "agent-1", "{}") for m in ("llm_call_ms", "agent_response_ms")]
    now = time.time()
    batch = Batch(
        "b", series, np.array([0, 1], np.int32), np.array([now - 30, now - 30]), np.array([900.0, 800.0])
    )
    assert IngestedBatch.store(token.id, batch, now=now)
    models.forget()
    models.note_coarse({"llm_call_ms"}, datetime.now(UTC).date())


def test_the_read_api_says_so_for_percentiles_of_a_coarse_metric_only(client, read_token, db):
    stored(db)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {read_token}"}
    coarse = client.get("/api/v1/stats?metric=llm_call_ms&window=1h", **auth).json()
    assert "as precise as the sender's buckets" in coarse["precision"]
    assert "precision" in client.get("/api/v1/histogram?metric=llm_call_ms&window=1h", **auth).json()
    assert "precision" in client.get("/api/v1/series?metric=llm_call_ms&window=1h&stat=p95", **auth).json()
    assert (
        "precision" not in client.get("/api/v1/series?metric=llm_call_ms&window=1h&stat=count", **auth).json()
    )
    assert "precision" not in client.get("/api/v1/stats?metric=agent_response_ms&window=1h", **auth).json()


def test_the_explorer_says_so(client, db):
    from django.contrib.auth.models import User

    stored(db)
    client.force_login(User.objects.create_user("viewer", password="x" * 12))
    viewer = client
    notes = viewer.get("/data/explore?metric=llm_call_ms&stat=p95&window=1h").json()["notes"]
    assert any("as precise as the sender's buckets" in n for n in notes)
