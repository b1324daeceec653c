"""Sending one batch to the ingest API v1, and what to do about the answer."""

from __future__ import annotations

import gzip
import http.client
import json
import random
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from collectors.protocol import INGEST_PATH, Point

try:  # orjson encodes faster; the SDK works without it
    import orjson

    def _dumps(obj) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - exercised where orjson is absent

    def _dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


def encode(points: list[Point], batch_id: str | None = None) -> tuple[str, bytes]:
    """A gzip-compressed v1 body for the points, and its batch id."""
    out = []
    for ts, metric, value, tags, node, agent in points:
        p = {"ts": ts, "node": node, "agent": agent, "metric": metric, "value": value}
        if tags:
            p["tags"] = tags
        out.append(p)
    return encode_dicts(out, batch_id)


def encode_dicts(points: list[dict], batch_id: str | None = None) -> tuple[str, bytes]:
    """As `encode`, for points already in their v1 form: dicts, as the simulator builds them."""
    batch_id = batch_id or uuid.uuid4().hex
    return batch_id, gzip.compress(_dumps({"batch_id": batch_id, "points": points}), compresslevel=1)


@dataclass
class Outcome:
    status: str  # "ok", "retry" (try again later) or "rejected" (never succeeds; drop it)
    code: int | None = None
    retry_after: float | None = None
    message: str = ""


class Transport:
    """One keep-alive HTTP connection to perfdash's API, posting to `path` (the ingest API by
    default; not thread-safe: one per thread)."""

    def __init__(self, url: str, token: str, timeout: float = 10.0, path: str = INGEST_PATH):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port], not {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self.path = parts.path.rstrip("/") + path
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, body: bytes) -> Outcome:
        try:
            conn = self._connection()
            conn.request("POST", self.path, body=body, headers=self._headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Outcome("retry", message=f"{type(exc).__name__}: {exc}")
        code = response.status
        if 200 <= code < 300:
            return Outcome("ok", code)
        message = _error_text(data)
        if code in (408, 425, 429) or code >= 500:
            return Outcome("retry", code, _retry_after(response.getheader("Retry-After")), message)
        return Outcome("rejected", code, message=message)


def _error_text(data: bytes) -> str:
    try:
        body = json.loads(data)
        return (
            json.dumps(body)
            if not isinstance(body, dict)
            else (
                body.get("error", "") + "".join(f", {k}={body[k]}" for k in ("point", "field") if k in body)
            )
        )
    except ValueError:
        return data[:200].decode("utf-8", "replace")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Backoff:
    """Exponential backoff with full jitter, overridden by the server's Retry-After."""

    def __init__(self, base: float = 0.5, cap: float = 30.0):
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self, retry_after: float | None = None) -> float:
        self.failures += 1
        delay = random.uniform(self.base, min(self.cap, self.base * 2**self.failures))
        return max(delay, retry_after) if retry_after is not None else delay

    def reset(self) -> None:
        self.failures = 0
