from __future__ import annotations

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "perfdash.metrics"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from perfdash.metrics import dimensions  # noqa: F401 - registers the DIMENSION_TAGS check
