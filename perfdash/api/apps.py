from __future__ import annotations

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "perfdash.api"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from perfdash.api import checks  # noqa: F401 - registers the production-settings check
