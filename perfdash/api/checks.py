"""Refuse to serve the world with development settings, or to accept names the store cannot hold."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

from perfdash.metrics.models import RollupKey, Series

DEV_SECRET = "dev-only-insecure-secret-key-change-me"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "testserver"}
# Words that mark a value copied from an example rather than generated.
PLACEHOLDERS = ("change", "secret", "example", "insecure", "default", "password")


def weak_secret(key: str) -> bool:
    """Django's own deploy check asks for 50 characters and 5 distinct ones; a placeholder such
    as compose's `change-me` padded to that length is still a placeholder."""
    lowered = key.lower()
    return (
        key == DEV_SECRET
        or len(key) < 50
        or len(set(key)) < 10
        or any(word in lowered for word in PLACEHOLDERS)
    )


@register("security")
def production_settings(app_configs=None, **kwargs) -> list:
    public = [h for h in settings.ALLOWED_HOSTS if h not in LOCAL_HOSTS]
    problems = []
    if public and weak_secret(settings.SECRET_KEY):
        problems.append(
            Error(
                f"SECRET_KEY is weak (the development default, a placeholder, short or repetitive) "
                f"while ALLOWED_HOSTS admits {public[0]!r}.",
                hint="Set SECRET_KEY in the environment to a long random string, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`.",
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


# The columns a metric, node, agent, tag key or tag value is stored in.
NAME_COLUMNS = (
    (Series, ("metric", "node", "agent")),
    (RollupKey, ("metric", "node", "agent", "tag_key", "tag_value")),
)


@register("ingest")
def name_limit_fits_the_columns(app_configs=None, **kwargs) -> list:
    widths = {
        f"{model.__name__}.{name}": model._meta.get_field(name).max_length
        for model, names in NAME_COLUMNS
        for name in names
    }
    narrowest = min(widths, key=widths.__getitem__)
    limit, width = settings.INGEST_MAX_NAME_LENGTH, widths[narrowest]
    if limit <= width:
        return []
    return [
        Error(
            f"INGEST_MAX_NAME_LENGTH is {limit}, longer than {narrowest} holds ({width} characters).",
            hint=f"Set INGEST_MAX_NAME_LENGTH to at most {width}: a longer name would pass validation, "
            "then fail to store, and its whole batch with it.",
            id="perfdash.E002",
        )
    ]
