"""The node agent's local ingest endpoint: ingest API v1 bodies POSTed without a token, and
OTLP/HTTP metrics exports (otlp.py)."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from collectors import protocol
from collectors.agent.forwarding import NODE_LIMITS, OncePerProblem, address_family, log, record
from collectors.agent.otlp import OTLP_PATH, OtlpForwarder
from collectors.client import Client
from collectors.protocol import INGEST_PATH, Point, ProtocolError

RECENT_BATCH_IDS = 10_000


def parse_body(raw: bytes, now: float) -> tuple[str | None, list[Point]]:
    """The batch id and points of a v1 body, or ProtocolError saying what and where."""
    batch_id, points = protocol.check_body(protocol.loads(raw), NODE_LIMITS)
    return batch_id, protocol.check_points(points, now, NODE_LIMITS)


class LocalIngest:
    """What the local endpoint does with a body, HTTP aside."""

    def __init__(self, client: Client):
        self.client = client
        self.points = 0
        self.refused = 0  # requests answered with an error
        self._problems = OncePerProblem()
        # Batch ids lately accepted: a local sender that retries after a timeout must not
        # count twice, as it would not at the server (ids are per sender, like UUIDs).
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def handle(self, body: bytes, content_type: str, content_encoding: str) -> tuple[int, dict]:
        try:
            raw = protocol.decode_body(body, content_type, content_encoding, NODE_LIMITS)
            batch_id, points = parse_body(raw, time.time())
        except ProtocolError as exc:
            self.refused += 1
            self._problems.warn(f"local ingest refused a body: {exc.message}", json.dumps(exc.as_json()))
            return exc.status, exc.as_json()
        if self.client.buffered() + len(points) > self.client.max_buffer:
            self.refused += 1
            return 503, {"error": "the agent's buffer is full; retry"}
        if batch_id is None or self._first_time(batch_id):
            for point in points:
                record(self.client, point)
            self.points += len(points)
        return 202, {"accepted": len(points)}

    def _first_time(self, batch_id: str) -> bool:
        with self._lock:
            if batch_id in self._recent:
                return False
            self._recent[batch_id] = None
            if len(self._recent) > RECENT_BATCH_IDS:
                self._recent.popitem(last=False)
            return True


class IngestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, for agents that post every second
    server: LocalHttpServer

    def do_POST(self) -> None:
        if urlsplit(self.path).path == OTLP_PATH:
            return self._otlp()
        if urlsplit(self.path).path != INGEST_PATH:
            return self._reply(404, {"error": f"not found; POST to {INGEST_PATH}"}, close=True)
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self._reply(411, {"error": "Content-Length is required"}, close=True)
        max_body = NODE_LIMITS.max_body
        if int(length) > max_body:
            return self._reply(413, {"error": f"body is larger than {max_body} bytes"}, close=True)
        body = self.rfile.read(int(length))
        status, answer = self.server.ingest.handle(
            body, self.headers.get("Content-Type", ""), self.headers.get("Content-Encoding", "")
        )
        self._reply(status, answer)

    def _otlp(self) -> None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > NODE_LIMITS.max_body:
            return self._reply(
                413 if length.isdigit() else 411, {"error": "a body of known size"}, close=True
            )
        body = self.rfile.read(int(length))
        answer = self.server.otlp.forward(
            body, self.headers.get("Content-Type", ""), self.headers.get("Content-Encoding", "")
        )
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if answer.retry_after is not None:
            self.send_header("Retry-After", answer.retry_after)
        self.end_headers()
        self.wfile.write(answer.body)

    def do_GET(self) -> None:
        if urlsplit(self.path).path != INGEST_PATH:
            return self._reply(404, {"error": f"not found; POST to {INGEST_PATH}"}, close=True)
        self._reply(405, {"error": "only POST"}, close=True)

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _reply(self, status: int, body: dict, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 405:
            self.send_header("Allow", "POST")
        if status == 503:
            self.send_header("Retry-After", "1")
        if close:  # a body left unread would be taken for the next request
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("local ingest: " + format, *args)


class LocalHttpServer(ThreadingHTTPServer):
    def __init__(self, host: str, port: int, ingest: LocalIngest, otlp: OtlpForwarder):
        self.address_family = address_family(host)
        self.ingest = ingest
        self.otlp = otlp
        super().__init__((host, port), IngestHandler)
