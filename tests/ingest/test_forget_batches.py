"""Batch ids are remembered for the idempotency window, then forgotten by a real worker."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.ingest.tasks import forget_batches
from perfdash.metrics.batch import Batch
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def one_point(batch_id: str) -> Batch:
    now = timezone.now().timestamp()
    series = [("agent_response_ms", "node-1", "agent-1", "{}")]
    return Batch(batch_id, series, np.zeros(1, np.int32), np.array([now]), np.array([800.0]))


def test_batch_ids_past_the_window_are_forgotten_and_recent_ones_still_deduplicate(
    transactional_db, clean_tables, celery_worker, settings
):
    token = ApiToken.issue("collector", ["ingest"])[0]
    for batch_id in ("old-1", "old-2", "recent"):
        assert IngestedBatch.store(token.id, one_point(batch_id))
    old = timezone.now() - timedelta(days=settings.INGEST_IDEMPOTENCY_DAYS, hours=1)
    IngestedBatch.objects.filter(batch_id__startswith="old").update(stored_at=old)

    forget_batches.delay()

    wait_until(
        lambda: not IngestedBatch.objects.filter(batch_id__startswith="old").exists(), 60, "forgetting"
    )
    assert list(IngestedBatch.objects.values_list("batch_id", flat=True)) == ["recent"]
    assert not IngestedBatch.store(token.id, one_point("recent"))  # still a no-op


def test_forgetting_goes_in_chunks_until_nothing_old_is_left(db):
    token = ApiToken.issue("collector", ["ingest"])[0]
    for i in range(25):
        IngestedBatch.objects.create(token=token, batch_id=f"b{i}", points=1)
    IngestedBatch.objects.update(stored_at=timezone.now() - timedelta(days=30))

    assert IngestedBatch.forget_before(timezone.now() - timedelta(days=1), chunk=10) == 25
    assert not IngestedBatch.objects.exists()
