"""Refuse to serve the world with development settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

DEV_SECRET = "dev-only-insecure-secret-key-change-me"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "testserver"}


@register("security")
def production_settings(app_configs=None, **kwargs) -> list:
    public = [h for h in settings.ALLOWED_HOSTS if h not in LOCAL_HOSTS]
    problems = []
    if public and settings.SECRET_KEY == DEV_SECRET:
        problems.append(
            Error(
                f"SECRET_KEY is the development default while ALLOWED_HOSTS admits {public[0]!r}.",
                hint="Set SECRET_KEY in the environment (a long random string).",
                id="perfdash.E001",
            )
        )
    if public and settings.DEBUG:
        problems.append(
            Warning(
                "DEBUG is on while ALLOWED_HOSTS admits other hosts: error pages would show internals.",
                hint="Set DEBUG=0.",
                id="perfdash.W001",
            )
        )
    if settings.ALERTS_ALLOW_PRIVATE_URLS and public:
        problems.append(
            Warning(
                "ALERTS_ALLOW_PRIVATE_URLS lets alert webhooks reach private and loopback addresses.",
                hint="Leave it off outside tests.",
                id="perfdash.W002",
            )
        )
    return problems
