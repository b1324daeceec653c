from __future__ import annotations

from django.urls import path

from perfdash.api import views

urlpatterns = [
    path("ingest", views.ingest, name="api-ingest"),
    path("stats", views.stats, name="api-stats"),
    path("histogram", views.histogram, name="api-histogram"),
    path("series", views.series, name="api-series"),
    path("events", views.events, name="api-events"),
    path("compare", views.compare, name="api-compare"),
    path("outliers", views.outlier_agents, name="api-outliers"),
    path("slos", views.slos, name="api-slos"),
    path("anomaly", views.anomaly, name="api-anomaly"),
]
