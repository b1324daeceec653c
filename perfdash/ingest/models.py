from __future__ import annotations

import time
from datetime import datetime

from django.contrib.postgres.indexes import BrinIndex
from django.db import connection, models, transaction

from perfdash.lib.pg import binary_cursor
from perfdash.metrics import store
from perfdash.metrics.batch import Batch


class IngestedBatch(models.Model):
    """One accepted batch, stored exactly once: its unique (token, batch id) row commits in the
    same transaction as its points and rollup deltas, so a redelivered task is a no-op."""

    token = models.ForeignKey("api.ApiToken", on_delete=models.PROTECT, related_name="batches")
    batch_id = models.CharField(max_length=128)
    points = models.PositiveIntegerField()
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "batch_id"], name="batch_unique_per_token")]
        # Rows are appended in time order: a block-range index finds the old ones for almost
        # nothing, where a btree would cost every insert.
        indexes = [BrinIndex(fields=["stored_at"], name="ingestedbatch_stored_brin")]
        verbose_name_plural = "ingested batches"

    def __str__(self) -> str:
        return f"{self.batch_id} ({self.points} points)"

    @classmethod
    def forget_before(cls, cutoff: datetime, chunk: int = 10_000) -> int:
        """Remove the records of batches stored before `cutoff`, a chunk per transaction (no
        long lock on a table every ingest writes to). A batch re-sent after that is stored
        again: the idempotency window (INGEST_IDEMPOTENCY_DAYS) must outlast a collector's
        retries."""
        removed = 0
        while True:
            with connection.cursor() as cur:
                cur.execute(
                    "DELETE FROM ingest_ingestedbatch WHERE id IN (SELECT id FROM ingest_ingestedbatch "
                    "WHERE stored_at < %s LIMIT %s)",
                    [cutoff, chunk],
                )
                removed += cur.rowcount
                if cur.rowcount < chunk:
                    return removed

    @classmethod
    def store(cls, token_id: int, batch: Batch, now: float | None = None, pending: int | None = None) -> bool:
        """Write the batch unless this token already stored this batch id. True if written.
        `pending`: the outbox row that kept the batch since its 202, removed in the same
        transaction either way."""
        now = time.time() if now is None else now
        series_ids, level_keys = store.prepare(batch, now)
        with transaction.atomic(), connection.cursor() as cur:
            if pending is not None:
                cur.execute("DELETE FROM ingest_pendingbatch WHERE id = %s", [pending])
            cur.execute(
                "INSERT INTO ingest_ingestedbatch (token_id, batch_id, points, stored_at) "
                "VALUES (%s, %s, %s, now()) ON CONFLICT DO NOTHING RETURNING id",
                [token_id, batch.batch_id, len(batch)],
            )
            if cur.fetchone() is None:
                return False
            store.write(cur, batch, series_ids, level_keys, now)
        return True


class PendingBatch(models.Model):
    """The outbox: an accepted batch, from before its 202 until the transaction that stores it
    (which deletes this row). The queue message only wakes a worker: a message lost with a
    killed worker or a restarted Redis is sent again by the sweeper, and a batch stored twice
    is impossible (IngestedBatch's unique row)."""

    token = models.ForeignKey("api.ApiToken", on_delete=models.PROTECT, related_name="+")
    batch_id = models.CharField(max_length=128)
    points = models.PositiveIntegerField()
    payload = models.BinaryField(help_text="The validated batch (Batch.to_bytes).")
    accepted_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(auto_now_add=True, help_text="When a worker was last woken for it.")

    class Meta:
        # A client re-sending a batch still pending adds nothing.
        constraints = [models.UniqueConstraint(fields=["token", "batch_id"], name="pending_unique_per_token")]
        indexes = [models.Index(fields=["queued_at"], name="pending_queued_at")]
        verbose_name_plural = "pending batches"

    def __str__(self) -> str:
        return f"{self.batch_id} ({self.points} points)"

    @classmethod
    def keep(cls, token_id: int, batch: Batch) -> int | None:
        """Commit the batch to the outbox; its row id, or None if this batch id is pending
        already (a re-send: it will be stored once)."""
        # The payload bound in binary (%b): Django's cursors send it as hex text, which
        # PostgreSQL must then parse back into bytes.
        with binary_cursor() as cur:
            cur.execute(
                "INSERT INTO ingest_pendingbatch "
                "(token_id, batch_id, points, payload, accepted_at, queued_at) "
                "VALUES (%s, %s, %s, %b, now(), now()) ON CONFLICT DO NOTHING RETURNING id",
                [token_id, batch.batch_id, len(batch), batch.to_bytes()],
            )
            row = cur.fetchone()
        return row[0] if row else None

    @classmethod
    def load(cls, pending: int) -> tuple[int, Batch, float] | None:
        """(token id, batch, seconds since it was accepted) of a pending row, or None once it
        is stored. Its age is read on the database's clock, which stamped `accepted_at`: the
        worker's clock may be off."""
        with binary_cursor() as cur:  # the payload in binary, not as hex text
            cur.execute(
                "SELECT token_id, payload, extract(epoch FROM clock_timestamp() - accepted_at)::float8 "
                "FROM ingest_pendingbatch WHERE id = %s",
                [pending],
            )
            row = cur.fetchone()
        return (row[0], Batch.from_bytes(bytes(row[1])), row[2]) if row else None

    @classmethod
    def due(cls, older_than_s: float, limit: int = 1000) -> list[int]:
        """Claims the rows whose wake-up is older than `older_than_s` (a message lost, or
        still queued behind a backlog: a second wake-up for a stored row is a no-op), marking
        them woken now. SKIP LOCKED: two sweepers never claim the same row."""
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                "UPDATE ingest_pendingbatch SET queued_at = now() WHERE id IN ("
                "SELECT id FROM ingest_pendingbatch WHERE queued_at < now() - make_interval(secs => %s) "
                "ORDER BY queued_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
                [older_than_s, limit],
            )
            return sorted(r[0] for r in cur.fetchall())

    @classmethod
    def fail(cls, pending: int, message: dict, error: str) -> None:
        """Move a batch that cannot be stored to the failed batches, in one transaction."""
        with transaction.atomic():
            FailedBatch.objects.create(message=message, error=error)
            cls.objects.filter(pk=pending).delete()


class FailedBatch(models.Model):
    """A batch the worker could not store for a reason other than the database being away
    (that is retried forever). Kept whole so nothing acknowledged is lost; replayed from the
    admin or with `manage.py replay_failed_batches` once the cause is fixed."""

    STORED = "stored"
    ALREADY_STORED = "already stored"
    FAILED = "failed: "  # then the error

    message = models.JSONField()
    error = models.TextField()
    failed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "failed batches"

    def __str__(self) -> str:
        return f"{self.batch_id} failed at {self.failed_at:%Y-%m-%d %H:%M:%S}"

    @property
    def batch_id(self) -> str | None:
        return self.message.get("batch_id")

    def replay(self) -> str:
        """Store the batch, at most once, and forget this row; if it fails again, keep the row
        with the new error. Returns STORED, ALREADY_STORED or FAILED followed by the error.

        The store commits on its own, not in a transaction with the delete: it resolves series
        ids and partitions before its transaction, and caches them, so a rollback around it
        would leave ids cached that no longer exist. Its (token, batch id) row makes this safe:
        a replay cut off before the delete finds the batch already stored next time."""
        try:
            written = IngestedBatch.store(self.message["token_id"], Batch.from_message(self.message))
        except Exception as exc:  # whatever it is, the row keeps the batch for the next attempt
            self.error = f"{type(exc).__name__}: {exc}"
            # An update, not save(): a row a concurrent replay has deleted stays deleted.
            FailedBatch.objects.filter(pk=self.pk).update(error=self.error)
            return f"{self.FAILED}{self.error}"
        FailedBatch.objects.filter(pk=self.pk).delete()
        return self.STORED if written else self.ALREADY_STORED
