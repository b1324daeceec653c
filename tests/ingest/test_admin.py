"""The ingest admin: what the pipeline stored is shown, never added or edited by hand; failed
batches are replayed from their list."""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.db import connection

from perfdash.api.models import ApiToken
from perfdash.ingest.models import FailedBatch, IngestedBatch
from perfdash.metrics.batch import Batch


def batch(batch_id: str) -> Batch:
    return Batch(
        batch_id,
        [("agent_response_ms", "node-1", "agent-1", "{}")],
        np.zeros(5, np.int32),
        np.full(5, time.time()),
        np.arange(5.0),
    )


def stored_points() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics_point")
        return cur.fetchone()[0]


def test_ingested_batches_are_shown_but_cannot_be_added_changed_or_deleted(admin_client):
    token = ApiToken.issue("collector", ["ingest"])[0]
    IngestedBatch.store(token.id, batch("b-1"))
    row = IngestedBatch.objects.get()
    url = f"/admin/ingest/ingestedbatch/{row.pk}"

    listing = admin_client.get("/admin/ingest/ingestedbatch/")
    assert listing.status_code == 200 and b"b-1" in listing.content
    assert b"/admin/ingest/ingestedbatch/add/" not in listing.content
    assert admin_client.get("/admin/ingest/ingestedbatch/add/").status_code == 403
    assert admin_client.post("/admin/ingest/ingestedbatch/add/", {"batch_id": "typed"}).status_code == 403
    shown = admin_client.get(f"{url}/change/")
    assert shown.status_code == 200 and b'name="_save"' not in shown.content
    assert admin_client.post(f"{url}/change/", {"batch_id": "edited", "points": "1"}).status_code == 403
    assert admin_client.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
    row.refresh_from_db()
    assert (row.batch_id, row.points) == ("b-1", 5)


def test_failed_batches_cannot_be_added_or_edited(admin_client):
    token = ApiToken.issue("collector", ["ingest"])[0]
    kept = FailedBatch.objects.create(message=batch("b-1").to_message(token.id), error="was broken")
    url = f"/admin/ingest/failedbatch/{kept.pk}/change/"

    assert admin_client.get("/admin/ingest/failedbatch/add/").status_code == 403
    assert admin_client.get(url).status_code == 200
    assert b'name="_save"' not in admin_client.get(url).content
    assert admin_client.post(url, {"message": "{}", "error": "edited"}).status_code == 403
    kept.refresh_from_db()
    assert (kept.message["batch_id"], kept.error) == ("b-1", "was broken")


@pytest.mark.django_db(transaction=True)  # the missing token is caught when the batch commits
def test_the_replay_action_stores_the_selected_failed_batches_once(admin_client, clean_tables):
    token = ApiToken.issue("collector", ["ingest"])[0]

    def failed(batch_id: str, token_id: int = token.id) -> FailedBatch:
        return FailedBatch.objects.create(message=batch(batch_id).to_message(token_id), error="was broken")

    twice = [failed("kept"), failed("kept")]
    orphan = failed("orphan", token_id=999_999)  # no such token: it fails again
    unselected = failed("later")

    r = admin_client.post(
        "/admin/ingest/failedbatch/",
        {"action": "replay", "_selected_action": [b.pk for b in [*twice, orphan]]},
        follow=True,
    )

    assert b"Stored 1, already stored 1, still failing 1." in r.content
    assert b"Batch orphan: IntegrityError" in r.content
    assert set(FailedBatch.objects.values_list("pk", flat=True)) == {orphan.pk, unselected.pk}
    assert list(IngestedBatch.objects.values_list("batch_id", flat=True)) == ["kept"]
    assert stored_points() == 5


def test_the_outbox_is_listed_read_only_without_its_payload(admin_client, db):
    import numpy as np

    from perfdash.api.models import ApiToken
    from perfdash.ingest.models import PendingBatch
    from perfdash.metrics.batch import Batch

    token = ApiToken.issue("collector", ["ingest"])[0]
    batch = Batch(
        "waiting-1", [("m", "n", "a", "{}")], np.zeros(1, np.int32), np.array([1.0]), np.array([2.0])
    )
    pending = PendingBatch.keep(token.id, batch)
    listing = admin_client.get("/admin/ingest/pendingbatch/")
    assert listing.status_code == 200 and b"waiting-1" in listing.content
    assert admin_client.get("/admin/ingest/pendingbatch/add/").status_code == 403
    detail = admin_client.get(f"/admin/ingest/pendingbatch/{pending}/change/")
    assert detail.status_code == 200 and b"payload" not in detail.content.lower()
    assert (
        admin_client.post(f"/admin/ingest/pendingbatch/{pending}/delete/", {"post": "yes"}).status_code == 403
    )
    assert PendingBatch.objects.filter(pk=pending).exists()
