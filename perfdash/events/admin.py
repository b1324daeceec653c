from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from perfdash.events.models import Event
from perfdash.lib.admin import ReadOnlyAdmin


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """What collectors said happened, as they said it: listed, never typed in, edited or
    deleted by hand. A verified deploy shows its verification."""

    list_display = ["ts", "kind", "title", "tags", "verdict", "token", "created_at"]
    list_filter = ["kind"]
    search_fields = ["title"]
    date_hierarchy = "ts"
    list_select_related = ["token"]
    fields = ["ts", "kind", "title", "tags", "token", "created_at", "verified_at", "verification_shown"]
    readonly_fields = ["verification_shown"]

    @admin.display(description="verification")
    def verdict(self, event: Event) -> str | None:
        """ "slower against 1.2.0 (canary)"; empty for an event that is not a verified deploy."""
        v = event.verification
        if not v:
            return None
        return f"{v['verdict']} against {v['against'] or 'the time before it'} ({v['how']})"

    @admin.display(description="verification")
    def verification_shown(self, event: Event) -> str | None:
        """The verdict, then each metric's comparison in words."""
        v = event.verification
        if not v:
            return None
        lines = [
            f"{self.verdict(event)}: {v['b']['label']} against {v['a']['label']}",
            *(f"{metric}: {found['summary']}" for metric, found in v["metrics"].items()),
            *v["notes"],
        ]
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))
