from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from perfdash.api import otlp

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("perfdash.api.urls")),
    path("v1/metrics", otlp.metrics, name="otlp-metrics"),
    path("", include("perfdash.dashboard.urls")),
]

handler500 = "perfdash.lib.unavailable.server_error"
