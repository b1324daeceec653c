from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied


class StaffOnlyAdminSite(admin.AdminSite):
    """The admin holds perfdash's settings. A logged-in viewer who is not staff gets a clear
    403 page instead of the admin's login form."""

    site_header = "perfdash settings"
    site_title = "perfdash"
    index_title = "Settings"

    def login(self, request, extra_context=None):
        if request.user.is_authenticated and not request.user.is_staff:
            raise PermissionDenied("Only staff can change settings.")
        return super().login(request, extra_context)


class PerfdashAdminConfig(AdminConfig):
    default_site = "perfdash.dashboard.admin_site.StaffOnlyAdminSite"
