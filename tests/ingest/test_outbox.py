"""A 202 means the batch is safe: it waits in PostgreSQL (the outbox) until the transaction
that stores it, whatever happens to a worker or to Redis. Workers are killed at points of
their loop, queued messages are wiped as by a Redis restart without persistence, and every
accepted batch is stored exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from perfdash.ingest.models import FailedBatch, IngestedBatch, PendingBatch
from perfdash.ingest.tasks import requeue_pending
from perfdash.metrics.batch import Batch
from tests.conftest import drop_keys, start_server, start_worker, wait_until
from tests.ingest.test_pipeline import make_points as pipeline_points
from tests.ingest.test_pipeline import post, raw_points, rollup_points

pytestmark = pytest.mark.slow
LEVELS_WITH_TOOL = 6


def make_points(n: int) -> list[dict]:
    # Names of their own: the session's worker caches series ids across tests, and other
    # tests empty the tables under it.
    return [{**p, "agent": f"outbox-{p['agent']}"} for p in pipeline_points(n)]


def stored_exactly(batch_ids: list[str], points_each: int) -> None:
    assert sorted(IngestedBatch.objects.values_list("batch_id", flat=True)) == sorted(batch_ids)
    assert raw_points() == points_each * len(batch_ids)
    assert rollup_points() == points_each * len(batch_ids) * LEVELS_WITH_TOOL
    assert not PendingBatch.objects.exists() and not FailedBatch.objects.exists()


def test_a_batch_s_binary_form_reads_back_the_same():
    b = Batch(
        "b",
        [("m", "n", "a", "{}"), ("m", "n", "b", "{}")],
        np.array([1, 0, 1], np.int32),
        np.array([1.5, 2.5, 3.5]),
        np.array([4.0, 5.0, 6.0]),
    )
    back = Batch.from_bytes(b.to_bytes())
    assert back.batch_id == "b" and back.series == b.series
    assert back.series_idx.tolist() == [1, 0, 1] and back.ts.tolist() == [1.5, 2.5, 3.5]
    assert back.value.tolist() == [4.0, 5.0, 6.0]


def test_a_batch_accepted_while_the_queue_is_down_waits_in_the_outbox_and_is_stored_later(
    tmp_path, token, celery_worker
):
    proc, url = start_server(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    try:
        r = post(url, token, {"batch_id": "while-down", "points": make_points(300)})
        assert r.status_code == 202 and r.json() == {"accepted": 300, "batch_id": "while-down"}
    finally:
        proc.kill()
    [kept] = PendingBatch.objects.all()
    assert kept.batch_id == "while-down" and len(Batch.from_bytes(bytes(kept.payload))) == 300
    assert raw_points() == 0

    requeue_pending.delay(older_than_s=0)  # the sweeper, through the session's worker
    wait_until(lambda: not PendingBatch.objects.exists(), 60, "the swept batch to be stored")
    stored_exactly(["while-down"], 300)


def test_a_re_sent_pending_batch_is_kept_once(tmp_path, token):
    proc, url = start_server(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    try:
        for _ in range(2):
            assert post(url, token, {"batch_id": "twice", "points": make_points(10)}).status_code == 202
    finally:
        proc.kill()
    assert PendingBatch.objects.filter(batch_id="twice").count() == 1


@pytest.mark.parametrize("messages_lost", [False, True], ids=["redelivered", "messages-wiped"])
@pytest.mark.parametrize("crash_at", ["received", "stored"])
def test_a_worker_killed_at_any_point_loses_nothing_and_doubles_nothing(
    tmp_path, token, isolated_queue, celery_worker, crash_at, messages_lost
):
    env = {
        "PERFDASH_TEST_SESSION": isolated_queue,
        "CELERY_VISIBILITY_TIMEOUT": "3",
        "CELERY_RESTORE_INTERVAL": "1",
    }
    server, url = start_server(tmp_path, PERFDASH_TEST_SESSION=isolated_queue)
    doomed = start_worker(
        tmp_path,
        f"doomed-{crash_at}",
        PERFDASH_TEST_WORKER_IMPORTS="tests.crashing_worker",
        PERFDASH_CRASH_AT=crash_at,
        **env,
    )
    try:
        ids = [f"{crash_at}-{i}" for i in range(3)]
        for batch_id in ids:
            assert post(url, token, {"batch_id": batch_id, "points": make_points(500)}).status_code == 202
        wait_until(lambda: doomed.popen.poll() is not None, 60, "the worker to die")
        stored_before = IngestedBatch.objects.count()
        assert stored_before == (1 if crash_at == "stored" else 0)
        if messages_lost:  # Redis restarted without its data: queued and unacknowledged alike
            drop_keys(f"t{isolated_queue}:")
            survivor = None
            requeue_pending(older_than_s=0)  # wakes the session's worker for every kept batch
        else:
            survivor = start_worker(tmp_path, f"survivor-{crash_at}", **env)
        wait_until(lambda: not PendingBatch.objects.exists(), 90, "every kept batch to be stored")
        stored_exactly(ids, 500)
    finally:
        server.kill()
        if not messages_lost and survivor is not None:
            survivor.kill()
