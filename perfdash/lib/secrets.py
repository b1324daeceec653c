"""Showing configuration without its secrets: URLs with their passwords and query strings
masked, on error pages and wherever a stored URL is displayed."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.views.debug import SafeExceptionReporterFilter

MASK = "********"
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _host_port(url: str) -> tuple[str, str, str] | None:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port or address
        return None
    return parts.scheme, f"[{host}]" if ":" in host else host, port


def origin_only(url: str) -> str:
    """scheme://host:port/… — for URLs whose path is itself the secret (Slack webhooks)."""
    found = _host_port(url)
    return f"{found[0]}://{found[1]}{found[2]}/…" if found else MASK


def mask_url(url: str) -> str:
    """scheme://user:********@host:port/path?******** — the user name stays (it helps to tell
    two URLs apart); a password and a query string, which often carries a token, do not."""
    found = _host_port(url)
    if found is None:
        return MASK
    scheme, host, port = found
    parts = urlsplit(url)
    user = f"{parts.username}:{MASK}@" if parts.password else (f"{parts.username}@" if parts.username else "")
    query = f"?{MASK}" if parts.query else ""
    return f"{scheme}://{user}{host}{port}{parts.path}{query}"


def mask_urls_in(text: str) -> str:
    return _URL.sub(lambda m: mask_url(m.group(0)), text)


class MaskingReporterFilter(SafeExceptionReporterFilter):
    """Django's filter hides settings named like secrets (…PASSWORD, …KEY); URL settings
    (REDIS_URL, CELERY_BROKER_URL, the channel layer's hosts) carry theirs inside the value."""

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        # type(), not isinstance(): lazy objects pose as str without being one.
        return mask_urls_in(value) if type(value) is str else value
