from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from perfdash.api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scopes", "created", "revoked_at"]
    list_filter = ["scopes", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created"]
    fields = ["name", "prefix", "scopes", "created", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        # A token is shown only once, so it is made with `manage.py create_token`.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset) -> None:
        n = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {n} token(s).")
