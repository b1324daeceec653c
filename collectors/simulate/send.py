"""Sending the simulated fleet's batches: sender threads that retry until the server takes a
batch, the counts, and the progress line."""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field

from collectors.transport import Backoff, Outcome, Transport, encode_dicts


@dataclass
class Batch:
    batch_id: str
    body: bytes
    points: int
    phase: str  # "backfill" or "live"

    @classmethod
    def of(cls, points: list[dict], phase: str) -> Batch:
        batch_id, body = encode_dicts(points)
        return cls(batch_id, body, len(points), phase)


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    sent: dict[str, int] = field(default_factory=lambda: {"backfill": 0, "live": 0})
    batches: int = 0
    retries: int = 0
    errors: int = 0  # failed attempts other than being throttled (429)
    unsent: int = 0
    unsent_batches: int = 0
    stage: str = "starting"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self, batch: Batch) -> None:
        with self.lock:
            self.sent[batch.phase] += batch.points
            self.batches += 1

    def retried(self, outcome: Outcome) -> None:
        with self.lock:
            self.retries += 1
            if outcome.code != 429:
                self.errors += 1

    def not_sent(self, batch: Batch) -> None:
        with self.lock:
            self.unsent += batch.points
            self.unsent_batches += 1

    def total(self) -> int:
        return sum(self.sent.values())


class DrySink:
    """--dry-run: batches are generated and encoded, then counted instead of sent."""

    def __init__(self, stats: Stats):
        self.stats = stats
        self.rejected: Outcome | None = None

    def put(self, batch: Batch) -> bool:
        self.stats.delivered(batch)
        return True

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class Senders:
    """Threads that each own a Transport and deliver queued batches: a batch is retried
    (same body, same batch id) until the server takes it, or everything stops when the server
    rejects one — nothing is dropped without being counted."""

    def __init__(self, url: str, token: str, count: int, stats: Stats):
        self.stats = stats
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=4 * count)
        self.stopped = threading.Event()  # a rejection, or abandoned by a second Ctrl-C
        self.rejected: Outcome | None = None
        self.threads = [
            threading.Thread(target=self._run, args=(Transport(url, token),), daemon=True)
            for _ in range(count)
        ]
        for t in self.threads:
            t.start()

    def put(self, batch: Batch) -> bool:
        """Queue a batch (waiting while the queue is full); False once sending has stopped."""
        if self._enqueue(batch):
            return True
        self.stats.not_sent(batch)
        return False

    def close(self) -> None:
        """Deliver everything queued, then stop the threads."""
        for _ in self.threads:
            self._enqueue(None)
        self._join()

    def _enqueue(self, item: Batch | None) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                pass
        return False

    def abandon(self) -> None:
        self.stopped.set()
        self._join()

    def _join(self) -> None:
        for t in self.threads:
            t.join()
        while True:
            try:
                batch = self.queue.get_nowait()
            except queue.Empty:
                return
            if batch is not None:
                self.stats.not_sent(batch)

    def _run(self, transport: Transport) -> None:
        backoff = Backoff()
        try:
            while not self.stopped.is_set():
                try:
                    batch = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if batch is None:
                    return
                self._deliver(transport, backoff, batch)
        finally:
            transport.close()

    def _deliver(self, transport: Transport, backoff: Backoff, batch: Batch) -> None:
        while True:
            outcome = transport.send(batch.body)
            if outcome.status == "ok":
                backoff.reset()
                self.stats.delivered(batch)
                return
            if outcome.status == "rejected":
                self.rejected = self.rejected or outcome
                self.stats.not_sent(batch)
                self.stopped.set()
                return
            self.stats.retried(outcome)
            if self.stopped.wait(backoff.next_delay(outcome.retry_after)):
                self.stats.not_sent(batch)
                return


class Progress:
    """One updating line on stderr; on a non-terminal (a log) a plain line every 10 s."""

    def __init__(self, stats: Stats, stream=sys.stderr):
        self.stats, self.stream = stats, stream
        self.tty = stream.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        every = 1.0 if self.tty else 10.0
        last_sent, last_at = 0, time.monotonic()
        while not self._stop.wait(every):
            sent, now = self.stats.total(), time.monotonic()
            self._show(sent, (sent - last_sent) / (now - last_at))
            last_sent, last_at = sent, now

    def _show(self, sent: int, rate: float) -> None:
        s = self.stats
        line = (
            f"{s.stage} | {sent:,} points sent | {rate:,.0f} points/s | {s.batches:,} batches"
            f" | {s.retries:,} retries | {s.errors:,} errors"
        )
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
