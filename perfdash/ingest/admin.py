from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import redis
from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count

from perfdash.ingest import cardinality
from perfdash.ingest.models import FailedBatch, IngestedBatch, PendingBatch
from perfdash.lib.admin import ReadOnlyAdmin
from perfdash.metrics.cardinality import DimensionValue, MetricSeries


@admin.register(IngestedBatch)
class IngestedBatchAdmin(ReadOnlyAdmin):
    list_display = ["batch_id", "token", "points", "stored_at"]
    list_filter = ["token"]
    search_fields = ["batch_id"]
    date_hierarchy = "stored_at"

    # Not deletable (ReadOnlyAdmin): the row is what makes a redelivered batch a no-op;
    # without it, its points would be stored twice.


@admin.register(PendingBatch)
class PendingBatchAdmin(ReadOnlyAdmin):
    """The outbox: batches answered 202 and not stored yet. Normally empty or nearly; rows that
    stay here say the workers are behind or away (the sweeper keeps waking them)."""

    list_display = ["batch_id", "token", "points", "accepted_at", "queued_at"]
    list_filter = ["token"]
    search_fields = ["batch_id"]
    exclude = ["payload"]

    # Not deletable (ReadOnlyAdmin): that would lose a batch promised to be stored.


@admin.register(FailedBatch)
class FailedBatchAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "error", "failed_at"]
    actions = ["replay"]

    # A failed batch may be discarded, knowingly: its points were never stored.
    def has_delete_permission(self, request, obj=None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

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


@admin.register(MetricSeries)
class MetricSeriesAdmin(ReadOnlyAdmin):
    """The biggest contributors to the store's size (docs/operations.md, "Cardinality limits"):
    metrics by series, and above them tags by values and tokens by new series today."""

    list_display = ["metric", "series", "first_seen"]
    ordering = ["-series"]
    search_fields = ["metric"]
    change_list_template = "admin/metrics/metricseries/change_list.html"

    # Kept by the store as series are created: a deleted row would let the metric grow past
    # its limit.
    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), **_contributors(time.time())})


@admin.register(DimensionValue)
class DimensionValueAdmin(ReadOnlyAdmin):
    list_display = ["tag_key", "tag_value", "day", "own"]
    list_filter = ["tag_key", "own", "day"]
    search_fields = ["tag_value"]
    ordering = ["-day", "tag_key", "tag_value"]

    # The decision is kept so that a series' rollups never move between its value and _other.
    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _contributors(now: float) -> dict:
    today = datetime.fromtimestamp(now, UTC).date()
    counted = Count("id")
    tags = {
        row["tag_key"]: {**row, "own": 0, "folded": 0}
        for row in DimensionValue.objects.values("tag_key").annotate(values=counted)
    }
    for row in DimensionValue.objects.filter(day=today).values("tag_key", "own").annotate(n=counted):
        tags[row["tag_key"]]["own" if row["own"] else "folded"] = row["n"]
    try:
        tokens = cardinality.new_series_today(now)
    except redis.RedisError:
        tokens = None
    names = apps.get_model("api", "ApiToken").objects.in_bulk([t for t, _ in tokens or []])
    return {
        "today": today,
        "tags": sorted(tags.values(), key=lambda t: (-t["own"] - t["folded"], -t["values"])),
        "tokens": None if tokens is None else [(names.get(t, f"token {t}"), n) for t, n in tokens],
        "metrics": MetricSeries.objects.count(),
        "limits": {
            "new_series_per_minute": settings.INGEST_NEW_SERIES_PER_MINUTE,
            "series_per_metric": settings.INGEST_MAX_SERIES_PER_METRIC,
            "metrics": settings.INGEST_MAX_METRICS,
            "dimension_values": settings.DIMENSION_MAX_VALUES,
        },
    }
