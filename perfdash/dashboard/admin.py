from __future__ import annotations

import json

from django.contrib import admin, messages
from django.http import HttpResponse

from perfdash.dashboard import boards
from perfdash.dashboard.models import Board, Panel


class PanelInline(admin.TabularInline):
    model = Panel
    extra = 1
    fields = ["position", "title", "query", "chart", "units", "target"]


@admin.register(Board)
class BoardAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "position", "panel_count"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    inlines = [PanelInline]
    actions = ["export_json"]

    @admin.display(description="panels")
    def panel_count(self, board: Board) -> int:
        return board.panels.count()

    @admin.action(description="Export the selected boards as JSON")
    def export_json(self, request, queryset):
        specs = [b.spec() for b in queryset.prefetch_related("panels")]
        if not specs:
            self.message_user(request, "No boards selected.", messages.WARNING)
            return None
        response = HttpResponse(
            json.dumps(boards.export(specs), indent=2) + "\n", content_type="application/json"
        )
        response["Content-Disposition"] = 'attachment; filename="boards.json"'
        return response
