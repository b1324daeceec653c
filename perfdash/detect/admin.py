from __future__ import annotations

from django.contrib import admin

from perfdash.detect.models import SLO


@admin.register(SLO)
class SLOAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "metric",
        "threshold",
        "objective",
        "period_days",
        "node",
        "agent",
        "enabled",
    ]
    list_filter = ["enabled", "kind"]
    search_fields = ["name", "metric"]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        (
            "What counts",
            {
                "description": "A latency SLO counts a point good when it is at or below the threshold "
                "(in the metric's unit: 2000 for 2 s of a _ms metric); a ratio SLO counts the "
                "counter's values as bad (or good) events over the total metric's events.",
                "fields": ["kind", "metric", "threshold", "counts", "total_metric"],
            },
        ),
        ("Objective", {"fields": ["objective", "period_days"]}),
        ("Only part of the fleet (optional)", {"fields": ["node", "agent", "tag_key", "tag_value"]}),
    ]
