from __future__ import annotations

from django.core.management.base import BaseCommand

from perfdash.ingest.models import FailedBatch, IngestedBatch
from perfdash.metrics.batch import Batch


class Command(BaseCommand):
    help = "Store the batches kept as failed, now that their cause is fixed (idempotent)."

    def handle(self, *args, **options) -> None:
        stored = duplicates = failed = 0
        for failed_batch in FailedBatch.objects.order_by("id"):
            message = failed_batch.message
            try:
                written = IngestedBatch.store(message["token_id"], Batch.from_message(message))
            except Exception as exc:  # keep it for the next attempt, say why
                failed += 1
                self.stderr.write(f"batch {message.get('batch_id')}: {type(exc).__name__}: {exc}")
                continue
            stored += written
            duplicates += not written
            failed_batch.delete()
        self.stdout.write(f"stored {stored}, already stored {duplicates}, still failing {failed}")
