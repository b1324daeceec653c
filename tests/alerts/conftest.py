"""Real servers on loopback for the alert tests: aiosmtpd for email, a stdlib HTTP server
standing in for Slack and webhook receivers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import free_port


@dataclass
class Mailbox:
    messages: list = field(default_factory=list)
    refuse_recipients: bool = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if self.refuse_recipients:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def mailbox(settings) -> Iterator[Mailbox]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    # pytest-django swaps in the locmem backend; these tests are about the real SMTP exchange.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield box
    controller.stop()


@dataclass
class Receiver:
    """What a local HTTP server was sent, and what it answers."""

    status: int = 200
    answer: bytes = b"ok"
    trickle: bool = False  # send the first 20 bytes of the answer's body a byte at a time, slowly
    dribbled: int = 0  # bytes of a trickled answer written so far
    requests: list[dict] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        receiver.requests.append({"path": self.path, "headers": self.headers, "body": body})
        self.send_response(receiver.status)
        self.send_header("Content-Length", str(len(receiver.answer)))
        self.end_headers()
        if receiver.trickle:
            self.dribble(receiver)
        else:
            self.wfile.write(receiver.answer)

    def dribble(self, receiver: Receiver) -> None:
        try:
            for byte in receiver.answer[:20]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                receiver.dribbled += 1
                time.sleep(0.2)
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[str]:
    server.receiver = Receiver()  # type: ignore[attr-defined]
    # A short poll interval: shutdown() waits for the next poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(settings) -> Iterator[tuple[Receiver, str]]:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True  # the receiver is on loopback
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server) as address:
        yield server.receiver, f"http://{address}"  # type: ignore[attr-defined]
