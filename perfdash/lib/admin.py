"""Admin building blocks with no domain knowledge."""

from __future__ import annotations

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """What the system recorded (history, stored data): shown, never typed in, edited or
    deleted by hand. A subclass allows deleting where that loses nothing promised."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
