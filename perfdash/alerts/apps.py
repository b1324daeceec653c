from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "perfdash.alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from perfdash.alerts import checks  # noqa: F401 - registers the deploy verification's checks
