from __future__ import annotations

from django.contrib import admin

from perfdash.ingest.models import FailedBatch, IngestedBatch


@admin.register(IngestedBatch)
class IngestedBatchAdmin(admin.ModelAdmin):
    list_display = ["batch_id", "token", "points", "stored_at"]
    list_filter = ["token"]
    search_fields = ["batch_id"]
    date_hierarchy = "stored_at"

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FailedBatch)
class FailedBatchAdmin(admin.ModelAdmin):
    list_display = ["__str__", "error", "failed_at"]
    readonly_fields = ["message", "error", "failed_at"]
