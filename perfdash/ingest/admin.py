from __future__ import annotations

from collections import Counter

from django.contrib import admin, messages

from perfdash.ingest.models import FailedBatch, IngestedBatch


class StoredData(admin.ModelAdmin):
    """What the pipeline stored: shown, never typed in or edited by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(IngestedBatch)
class IngestedBatchAdmin(StoredData):
    list_display = ["batch_id", "token", "points", "stored_at"]
    list_filter = ["token"]
    search_fields = ["batch_id"]
    date_hierarchy = "stored_at"

    # The row is what makes a redelivered batch a no-op: without it, its points would be
    # stored twice.
    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FailedBatch)
class FailedBatchAdmin(StoredData):
    list_display = ["__str__", "error", "failed_at"]
    actions = ["replay"]

    # A replayed batch leaves this list, as a deleted one does.
    @admin.action(
        description="Replay the selected batches (each is stored at most once)", permissions=["delete"]
    )
    def replay(self, request, queryset) -> None:
        tally: Counter[str] = Counter()
        for failed_batch in queryset.order_by("id"):
            outcome = failed_batch.replay()
            if outcome.startswith(FailedBatch.FAILED):
                self.message_user(
                    request, f"Batch {failed_batch.batch_id}: {failed_batch.error}", messages.ERROR
                )
                outcome = FailedBatch.FAILED
            tally[outcome] += 1
        self.message_user(
            request,
            f"Stored {tally[FailedBatch.STORED]}, already stored {tally[FailedBatch.ALREADY_STORED]}, "
            f"still failing {tally[FailedBatch.FAILED]}.",
        )
