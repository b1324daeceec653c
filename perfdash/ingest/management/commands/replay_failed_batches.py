from __future__ import annotations

from collections import Counter

from django.core.management.base import BaseCommand

from perfdash.ingest.models import FailedBatch


class Command(BaseCommand):
    help = "Store the batches kept as failed, now that their cause is fixed (idempotent)."

    def handle(self, *args, **options) -> None:
        tally: Counter[str] = Counter()
        for failed_batch in FailedBatch.objects.order_by("id"):
            outcome = failed_batch.replay()
            if outcome.startswith(FailedBatch.FAILED):
                self.stderr.write(f"batch {failed_batch.batch_id}: {failed_batch.error}")
                outcome = FailedBatch.FAILED
            tally[outcome] += 1
        self.stdout.write(
            f"stored {tally[FailedBatch.STORED]}, already stored {tally[FailedBatch.ALREADY_STORED]}, "
            f"still failing {tally[FailedBatch.FAILED]}"
        )
