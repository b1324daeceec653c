from __future__ import annotations

import io
import time

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection

from perfdash.api.models import ApiToken
from perfdash.ingest.models import FailedBatch, IngestedBatch
from perfdash.ingest.tasks import store_batch
from perfdash.metrics.batch import Batch


def message(token_id: int, batch_id: str = "kept") -> dict:
    batch = Batch(
        batch_id,
        [("agent_response_ms", "n", "a", "{}")],
        np.zeros(5, np.int32),
        np.full(5, time.time()),
        np.arange(5.0),
    )
    return batch.to_message(token_id)


def stored_points() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics_point")
        return cur.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_cannot_be_stored_is_kept_whole_not_dropped(clean_tables):
    msg = message(token_id=999_999)  # no such token: a foreign-key violation, not a retryable error
    store_batch(msg)
    kept = FailedBatch.objects.get()
    assert kept.message == msg
    assert "foreign key" in kept.error
    assert not IngestedBatch.objects.exists()


def test_replay_stores_kept_batches_once(db):
    token = ApiToken.issue("t", ["ingest"])[0]
    FailedBatch.objects.create(message=message(token.id), error="was broken")
    FailedBatch.objects.create(message=message(token.id), error="was broken twice")
    out = io.StringIO()
    call_command("replay_failed_batches", stdout=out)
    assert "stored 1, already stored 1, still failing 0" in out.getvalue()
    assert not FailedBatch.objects.exists()
    assert stored_points() == 5


@pytest.mark.django_db(transaction=True)  # the missing token is caught when the batch commits
def test_a_replay_stores_the_batch_once_and_keeps_a_batch_that_fails_again_with_its_new_error(clean_tables):
    token = ApiToken.issue("t", ["ingest"])[0]
    first, copy = (
        FailedBatch.objects.create(message=message(token.id), error="was broken") for _ in range(2)
    )
    orphan = FailedBatch.objects.create(message=message(999_999, "orphan"), error="was broken")

    assert first.replay() == "stored"
    assert copy.replay() == "already stored"
    outcome = orphan.replay()

    assert outcome.startswith("failed: IntegrityError") and "foreign key" in outcome
    assert list(FailedBatch.objects.values_list("pk", "error")) == [
        (orphan.pk, outcome.removeprefix("failed: "))
    ]
    assert list(IngestedBatch.objects.values_list("batch_id", flat=True)) == ["kept"]
    assert stored_points() == 5

    FailedBatch.objects.filter(pk=orphan.pk).delete()  # discarded while it was being replayed
    assert orphan.replay().startswith("failed: ")
    assert not FailedBatch.objects.exists()
