"""StatsD over UDP: the listener, and the forwarder that turns datagrams into checked points."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from collectors import protocol
from collectors.agent import statsd
from collectors.agent.forwarding import NODE_LIMITS, OncePerProblem, address_family, log, record
from collectors.client import Client
from collectors.protocol import ProtocolError

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # absorbs bursts; the kernel caps it at rmem_max


class StatsdForwarder:
    def __init__(self, client: Client, default_agent: str):
        self.client = client
        self.default_agent = default_agent
        self.points = self.malformed = self.ignored = 0
        self._problems = OncePerProblem()

    def handle(self, datagram: bytes) -> None:
        parsed = statsd.parse(datagram)
        self.ignored += parsed.ignored
        self.malformed += len(parsed.errors)
        for error in parsed.errors:
            self._problems.warn(f"statsd: skipped a line: {error.problem}", repr(error.line))
        now = time.time()
        for p in parsed.points:
            try:
                point = protocol.check_fields(
                    p.metric,
                    p.node or self.client.node,
                    p.agent or self.default_agent,
                    p.tags,
                    now if p.ts is None else p.ts,
                    p.value,
                    now,
                    NODE_LIMITS,
                )
            except ProtocolError as exc:
                self.malformed += 1
                self._problems.warn(f"statsd: skipped a point: {exc}", repr(p))
                continue
            record(self.client, point)
            self.points += 1


class UdpListener:
    def __init__(self, host: str, port: int, on_datagram: Callable[[bytes], None]):
        self.on_datagram = on_datagram
        self.sock = socket.socket(address_family(host), socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        self.sock.bind((host, port))
        self.sock.settimeout(0.5)  # how soon `serve` notices `stop`
        self.address = self.sock.getsockname()

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._receive()
        self.sock.settimeout(0)  # what arrived before the stop still counts
        while self._receive():
            pass

    def _receive(self) -> bool:
        try:
            datagram = self.sock.recv(65535)
        except (TimeoutError, BlockingIOError):
            return False
        try:
            self.on_datagram(datagram)
        except Exception:  # one datagram must never stop the listener
            log.exception("statsd: failed to handle a datagram")
        return True

    def close(self) -> None:
        self.sock.close()
