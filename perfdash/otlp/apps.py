from __future__ import annotations

from django.apps import AppConfig


class OtlpConfig(AppConfig):
    name = "perfdash.otlp"
    verbose_name = "OpenTelemetry in"
