from __future__ import annotations

from django.contrib import admin

from perfdash.events.models import Event
from perfdash.lib.admin import ReadOnlyAdmin


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """What collectors said happened, as they said it: listed, never typed in, edited or
    deleted by hand."""

    list_display = ["ts", "kind", "title", "tags", "token", "created_at"]
    list_filter = ["kind"]
    search_fields = ["title"]
    date_hierarchy = "ts"
    list_select_related = ["token"]
