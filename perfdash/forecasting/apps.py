from __future__ import annotations

from django.apps import AppConfig


class ForecastingConfig(AppConfig):
    name = "perfdash.forecasting"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Capacity planning"
