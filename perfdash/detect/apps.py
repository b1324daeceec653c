from __future__ import annotations

from django.apps import AppConfig


class DetectConfig(AppConfig):
    name = "perfdash.detect"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Service levels"
