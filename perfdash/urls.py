from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("perfdash.api.urls")),
    path("", include("perfdash.dashboard.urls")),
]

handler500 = "perfdash.lib.unavailable.server_error"
