from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Receiver:
    """A real local HTTP server standing in for perfdash: records every request and answers
    with the next scripted (status, headers, body), then `default`."""

    url: str = ""
    requests: list[dict] = field(default_factory=list)
    seen: list[tuple[str, str, dict]] = field(default_factory=list)  # (path, Authorization, body)
    script: list[tuple[int, dict, dict]] = field(default_factory=list)
    default: tuple[int, dict, dict] = (202, {}, {"accepted": 1})
    times: list[float] = field(default_factory=list)

    def points(self) -> list[dict]:
        return [p for r in self.requests for p in r["points"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    import time

    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            state.requests.append(json.loads(raw))
            state.seen.append((self.path, self.headers.get("Authorization", ""), state.requests[-1]))
            state.times.append(time.monotonic())
            status, headers, body = state.script.pop(0) if state.script else state.default
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
