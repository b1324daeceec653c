from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from perfdash.dashboard import board_files, boards
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
    change_list_template = "admin/dashboard/board/change_list.html"

    @admin.display(description="panels")
    def panel_count(self, board: Board) -> int:
        return board.panels.count()

    @admin.action(description="Export the selected boards as JSON")
    def export_json(self, request, queryset):
        response = HttpResponse(
            board_files.dumps(queryset.prefetch_related("panels")), content_type="application/json"
        )
        response["Content-Disposition"] = 'attachment; filename="boards.json"'
        return response

    def get_urls(self):
        upload = path("import/", self.admin_site.admin_view(self.import_view), name="dashboard_board_import")
        return [upload, *super().get_urls()]

    def import_view(self, request):
        """A board file uploaded, loaded as import_boards loads it: by slug, all or none, a bad
        panel named in the message."""
        # An import creates boards and replaces panels: it needs both permissions.
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Import boards",
            "opts": self.model._meta,
            "max_kib": board_files.MAX_BYTES // 1024,
        }
        if request.method != "POST":
            return TemplateResponse(request, "admin/dashboard/board/import.html", context)
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "Choose a board file (JSON, as export_boards writes it).")
            return TemplateResponse(request, "admin/dashboard/board/import.html", context, status=400)
        try:  # never more read than one byte past the limit, which load then refuses
            loaded = board_files.load(upload.read(board_files.MAX_BYTES + 1))
        except boards.BoardError as exc:
            messages.error(request, f"Nothing was imported from {upload.name}: {exc}.")
            return TemplateResponse(request, "admin/dashboard/board/import.html", context, status=400)
        names = ", ".join(f"{b.name} ({b.panels.count()} panels)" for b in loaded) or "no boards"
        messages.success(request, f"Imported from {upload.name}: {names}.")
        return HttpResponseRedirect(reverse("admin:dashboard_board_changelist"))
