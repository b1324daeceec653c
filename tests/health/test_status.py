"""The header's status: amber while the oldest batch waiting to be stored is over 60 s old."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.utils import timezone

from perfdash.api.models import ApiToken
from perfdash.ingest.models import PendingBatch
from perfdash.metrics.batch import Batch


def keep_batch(accepted_s_ago: float) -> None:
    token, _ = ApiToken.issue("collector", ["ingest"])
    batch = Batch("b", [("m", "n", "a", "{}")], np.array([0], np.int32), np.array([1.0]), np.array([2.0]))
    pending = PendingBatch.keep(token.id, batch)
    PendingBatch.objects.filter(pk=pending).update(
        accepted_at=timezone.now() - timedelta(seconds=accepted_s_ago)
    )


def test_perfdash_is_not_behind_with_nothing_waiting(admin_client):
    assert admin_client.get("/data/health").json() == {"behind": False, "oldest_batch_age_s": 0.0}


def test_perfdash_is_not_behind_while_the_oldest_batch_waits_less_than_a_minute(admin_client):
    keep_batch(20)
    assert admin_client.get("/data/health").json()["behind"] is False


def test_perfdash_is_behind_once_a_batch_waits_more_than_a_minute(admin_client):
    keep_batch(90)
    health = admin_client.get("/data/health").json()
    assert health["behind"] is True and 89 < health["oldest_batch_age_s"] < 100


def test_the_header_status_needs_a_login(client):
    assert client.get("/data/health").status_code == 302
