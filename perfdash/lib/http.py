"""The one way perfdash sends HTTP to the outside world (Slack, alert webhooks).

Webhook URLs are secrets (the path is the credential), so nothing here logs a URL or puts
one in an error: messages name the host only.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

logger = logging.getLogger(__name__)

USER_AGENT = "perfdash-alerts"
# Enough for any error message; the rest of a larger answer is never read.
MAX_ANSWER_BYTES = 64 * 1024


class UnsafeUrlError(ValueError):
    """A URL that perfdash will never post to, however often it is tried."""


class PrivateAddressError(UnsafeUrlError):
    """The URL's host is, or resolves to, an address outside the public internet."""


@dataclass
class HttpResult:
    status: int | None  # None: no HTTP answer at all, and `error` says why
    body: str
    error: str | None
    duration_ms: float


def post_json(
    url: str, payload: dict, headers: dict | None = None, timeout: float | None = None
) -> HttpResult:
    body = json.dumps(payload).encode()
    return post_bytes(url, body, {"Content-Type": "application/json", **(headers or {})}, timeout)


def post_bytes(
    url: str, body: bytes, headers: dict | None = None, timeout: float | None = None
) -> HttpResult:
    """POST exactly `body` to `url`; `timeout` (seconds) bounds the whole exchange.

    Raises UnsafeUrlError (PrivateAddressError for a non-public address, unless
    ALERTS_ALLOW_PRIVATE_URLS) for a URL that can never be posted to. Every other failure,
    and an answer of any status, comes back as an HttpResult. Redirects are not followed:
    the new location would escape the address check.
    """
    started = time.monotonic()
    parts = _parse(url)
    timeout = settings.ALERTS_HTTP_TIMEOUT_S if timeout is None else timeout
    try:
        dialer = _Dialer(_resolve(parts))
        connection = _connection(parts, dialer, timeout)
        status, answer = _exchange(connection, dialer, _target(parts), body, headers or {}, timeout)
    except (OSError, http.client.HTTPException) as exc:
        result = HttpResult(None, "", f"{parts.hostname}: {_describe(exc)}", _ms_since(started))
        logger.warning("POST failed: %s after %.0f ms", result.error, result.duration_ms)
    else:
        result = HttpResult(status, answer, None, _ms_since(started))
        logger.info("POST to %s: HTTP %s in %.0f ms", parts.hostname, status, result.duration_ms)
    return result


def _parse(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrlError("only http and https URLs can be posted to")
    if not parts.hostname:
        raise UnsafeUrlError("the URL has no host")
    try:
        parts.port  # noqa: B018 -- urlsplit checks the port only when it is read
    except ValueError:
        raise UnsafeUrlError(f"{parts.hostname}: the port is not a number from 0 to 65535") from None
    return parts


def _resolve(parts: SplitResult) -> list[str]:
    infos = socket.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not settings.ALERTS_ALLOW_PRIVATE_URLS:
        for address in addresses:
            if not _is_public(address):
                raise PrivateAddressError(f"{parts.hostname}: {address} is not a public address")
    return addresses


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        # ::ffff:10.0.0.1 reaches 10.0.0.1: judge the IPv4 address it carries.
        ip = ip.ipv4_mapped
    # is_global alone lets multicast through, and is_private alone lets 100.64.0.0/10 through.
    blocked = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
    return ip.is_global and not blocked


def _connection(parts: SplitResult, dialer: _Dialer, timeout: float) -> http.client.HTTPConnection:
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=_tls_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    # http.client's one hook for opening the socket; the Host header and the TLS certificate
    # check still use the name.
    connection._create_connection = dialer
    return connection


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Dialer:
    """Connects only to the addresses vetted by _resolve, never to a second DNS answer (which
    could point inside: DNS rebinding), and can cut that connection from another thread."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.expired = threading.Event()
        # A second descriptor of the connection: shutdown() through it still cuts the
        # connection after TLS has wrapped (and detached) the socket http.client was given.
        self.handle: socket.socket | None = None

    def __call__(
        self, address: tuple[str, int], timeout: float, source_address: object = None
    ) -> socket.socket:
        last_error: OSError = OSError("no address to connect to")
        for ip in self.addresses:
            try:
                sock = socket.create_connection((ip, address[1]), timeout, source_address)
            except OSError as exc:
                last_error = exc
                continue
            self.handle = sock.dup()
            if self.expired.is_set():  # the deadline passed while connecting
                self.cut()
            return sock
        raise last_error

    def cut(self) -> None:
        self.expired.set()
        if self.handle is not None:
            with suppress(OSError):  # already closed
                self.handle.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _target(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _exchange(
    connection: http.client.HTTPConnection,
    dialer: _Dialer,
    target: str,
    body: bytes,
    headers: dict,
    timeout: float,
) -> tuple[int, str]:
    # The socket timeout bounds each connect and read, not their sum: a server trickling
    # bytes could hold a worker for hours. A watchdog cuts the connection at the deadline.
    watchdog = threading.Timer(timeout, dialer.cut)
    watchdog.start()
    try:
        connection.request("POST", target, body=body, headers={"User-Agent": USER_AGENT, **headers})
        with connection.getresponse() as response:
            status, answer = response.status, response.read(MAX_ANSWER_BYTES)
    except (OSError, http.client.HTTPException):
        if not dialer.expired.is_set():
            raise
    finally:
        watchdog.cancel()
        connection.close()
        dialer.close()
    if dialer.expired.is_set():
        # Cut at the deadline: the exchange failed, or what was read of the answer is partial.
        raise TimeoutError
    return status, answer.decode(errors="replace")


def _describe(exc: Exception) -> str:
    # Exception texts can quote the request (http.client.InvalidURL holds the whole URL), so
    # only the kind of failure is kept.
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or type(exc).__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000
