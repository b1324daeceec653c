from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from perfdash.forecasting.models import CapacityForecast, CapacityTarget


@admin.register(CapacityTarget)
class CapacityTargetAdmin(admin.ModelAdmin):
    list_display = ["__str__", "limit_shown", "capacity_shown", "headroom", "horizon_days", "enabled"]
    fields = ["kind", "enabled", "limit", "node_capacity", "headroom", "horizon_days", "history_days"]

    readonly_fields = ["kind"]

    def changelist_view(self, request, extra_context=None):
        CapacityTarget.all_kinds()  # one target per kind, all listed from the start
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # disable a target instead

    @admin.display(description="limit")
    def limit_shown(self, target: CapacityTarget) -> str:
        return f"{target.limit:g}" if target.limit else "default"

    @admin.display(description="per node")
    def capacity_shown(self, target: CapacityTarget) -> str:
        return f"{target.capacity_per_node():g} {target.unit}"


@admin.register(CapacityForecast)
class CapacityForecastAdmin(admin.ModelAdmin):
    """Read-only: the refit writes these; the capacity page shows them."""

    list_display = [
        "target",
        "subject_shown",
        "model",
        "backtest_mase",
        "crossing_at",
        "recommended_nodes",
        "fitted_at",
    ]
    list_filter = ["target", "ok"]
    fields = [
        "target",
        "subject",
        "fitted_at",
        "ok",
        "reason",
        "model",
        "backtest_mase",
        "step_s",
        "limit",
        "crossing_at",
        "crossing_earliest",
        "crossing_latest",
        "current_nodes",
        "recommended_nodes",
        "sizing",
        "notes",
        "page",
    ]
    readonly_fields = fields

    @admin.display(description="subject")
    def subject_shown(self, row: CapacityForecast) -> str:
        return row.subject or "fleet"

    @admin.display(description="chart")
    def page(self, row: CapacityForecast):
        return format_html('<a href="/capacity/?node={}">capacity page</a>', row.subject)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
