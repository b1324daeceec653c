"""A same-origin check for websockets: scheme, host and port, not the host alone.

Channels' AllowedHostsOriginValidator compares only the Origin's host with ALLOWED_HOSTS,
so a page on another port or scheme of an allowed host (`http://localhost:9999`,
`ftp://127.0.0.1`) could open a socket with the viewer's cookies. Here the Origin must be
the site itself: SITE_URL's origin, or the origin the browser used to reach this server (its
Host header, when ALLOWED_HOSTS admits it, with the scheme of the connection).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_origin(url: str) -> str | None:
    """scheme://host[:port] in lower case without a default port; None if not http(s)."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or ""), parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host or parts.path not in ("", "/") or parts.query:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _secure(scope: dict) -> bool:
    if scope.get("scheme") == "wss":
        return True
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:  # a TLS-terminating proxy in front says so in its header
        name = proxy[0].removeprefix("HTTP_").lower().replace("_", "-").encode()
        return _header(scope, name) == proxy[1]
    return False


def allowed_origins(scope: dict) -> set[str]:
    origins = {o for o in [normal_origin(settings.SITE_URL)] if o}
    host = _header(scope, b"host")
    if host and validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
        own = normal_origin(f"{'https' if _secure(scope) else 'http'}://{host}")
        if own:
            origins.add(own)
    return origins


class SameOriginValidator:
    """ASGI middleware: a websocket whose Origin is not this site is refused before it opens."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        origin = _header(scope, b"origin")
        if origin is None or normal_origin(origin) not in allowed_origins(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
