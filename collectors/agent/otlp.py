"""The node agent's local OTLP/HTTP endpoint: exports POSTed to /v1/metrics without a token
are passed on, as they are, to perfdash's /v1/metrics with the agent's token, and the
server's answer goes back to the exporter.

Nothing is decoded here (the agent needs no protobuf): the server translates the export, and
an exporter retries what the server could not take (OTel exporters retry on 429 and 503,
honouring Retry-After), so nothing waits in the agent.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

OTLP_PATH = "/v1/metrics"
RETRY_AFTER_S = 5
_UNAVAILABLE = 14  # google.rpc.Code


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str
    retry_after: str | None = None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def status_body(code: int, message: str, content_type: str) -> bytes:
    """A google.rpc.Status, in protobuf (two fields, written by hand) or JSON."""
    if content_type == "application/x-protobuf":
        text = message.encode()
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return json.dumps({"code": code, "message": message}).encode()


class OtlpForwarder:
    """Passes exports on to the server; one keep-alive connection, taken in turn (each agent
    exports every few seconds: a node's exports are few)."""

    def __init__(self, url: str, token: str, timeout: float = 10.0):
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self.path = parts.path.rstrip("/") + OTLP_PATH
        self._token = token
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self.exports = 0
        self.failed = 0  # exports the server could not be asked about

    def forward(self, body: bytes, content_type: str, content_encoding: str) -> Answer:
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": content_type}
        if content_encoding:
            headers["Content-Encoding"] = content_encoding
        kind = content_type.split(";")[0].strip().lower()
        with self._lock:
            for attempt in range(2):  # a kept-alive connection the server has closed: once more
                try:
                    conn = self._connection()
                    conn.request("POST", self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    break
                except (OSError, http.client.HTTPException) as exc:
                    self._close()
                    if attempt:
                        self.failed += 1
                        message = f"perfdash is unreachable: {type(exc).__name__}; retry"
                        return Answer(503, status_body(_UNAVAILABLE, message, kind), kind, str(RETRY_AFTER_S))
        self.exports += 1
        return Answer(
            response.status,
            data,
            response.getheader("Content-Type", kind),
            response.getheader("Retry-After"),
        )

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()
