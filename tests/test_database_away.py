"""While PostgreSQL is unreachable, the APIs answer 503 JSON with Retry-After and pages say so;
afterwards everything works again. The server reaches the real database through a TCP
proxy that the test cuts and restores, as a restart would (connections dropped, refused)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import free_port, start_server

pytestmark = pytest.mark.slow


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut (listener closed, connections dropped)."""

    def __init__(self, target: tuple[str, int]):
        self.target, self.port = target, free_port()
        self.listener: socket.socket | None = None
        self.open: list[socket.socket] = []
        self.restore()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone may not)
        self.listener.close()
        for conn in self.open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied_server(transactional_db, tmp_path: Path) -> Iterator[tuple[str, Proxy]]:
    db = settings.DATABASES["default"]
    proxy = Proxy((db["HOST"], int(db["PORT"])))
    url = f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"
    proc, base = start_server(tmp_path, DATABASE_URL=url)
    yield base, proxy
    proc.kill()
    proxy.cut()


def test_while_the_database_is_away_apis_answer_503_and_pages_say_so(
    proxied_server, ingest_token, read_token
):
    base, proxy = proxied_server
    browser = Client()
    browser.force_login(User.objects.create_user("viewer", password="x" * 12))
    cookies = {settings.SESSION_COOKIE_NAME: browser.cookies[settings.SESSION_COOKIE_NAME].value}
    read = {"Authorization": f"Bearer {read_token}"}
    point = {"ts": time.time(), "node": "n", "agent": "a", "metric": "agent_response_ms", "value": 1.0}
    body = {"points": [point]}
    stats = f"{base}/api/v1/stats?metric=agent_response_ms&window=1h"
    assert httpx.get(stats, headers=read).status_code == 200

    proxy.cut()
    answers = {
        "stats": httpx.get(stats, headers=read),
        "ingest": httpx.post(
            f"{base}/api/v1/ingest", json=body, headers={"Authorization": f"Bearer {ingest_token}"}
        ),
        "data": httpx.get(f"{base}/data/overview", cookies=cookies),
        "page": httpx.get(f"{base}/", cookies=cookies),
    }
    for name, answer in answers.items():
        assert answer.status_code == 503, (name, answer.text[:300])
        assert answer.headers["Retry-After"] == "5", name
    for name in ("stats", "ingest", "data"):
        assert answers[name].json() == {"error": "database unavailable; retry later"}, name
    assert "Database unavailable, retrying" in answers["page"].text

    proxy.restore()
    assert httpx.get(stats, headers=read).status_code == 200
    assert httpx.get(f"{base}/", cookies=cookies).status_code == 200
