"""The SDK an agent imports: record points; a background thread ships them.

    from collectors import Client
    perf = Client(url="http://127.0.0.1:8000", token="pd_…", node="node-1", agent="agent-17")

    @perf.tool("web_search")
    def search(q): ...

    with perf.llm("acme", "m-large"):
        answer = call_model(...)

Default tags (`tags={"version": "1.3.0"}`, or $PERFDASH_TAGS) go on every point, so a
release or an A/B variant can be compared with another.

Recording only appends a tuple to a list; the background thread flushes by size and by
interval, gzip-compressed, retries with backoff and jitter, spools to disk while the server
is away, and never holds more than `max_buffer` points in memory.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import socket
import threading
import time
from pathlib import Path

from collectors import event as event_protocol
from collectors.memory import rss_bytes
from collectors.protocol import (
    AGENT_MEMORY_BYTES,
    AGENT_RESPONSE_MS,
    CACHE_HITS_TOTAL,
    CACHE_MISSES_TOTAL,
    DEFAULT_LIMITS,
    ERRORS_TOTAL,
    LLM_CALL_MS,
    MEMORY_OP_MS,
    TOKENS_TOTAL,
    TOOL_EXECUTION_MS,
    ProtocolError,
    check_tags,
)
from collectors.spool import Spool
from collectors.transport import Backoff, Outcome, Point, Transport, encode

log = logging.getLogger("perfdash.collectors")


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        node: str | None = None,
        agent: str | None = None,
        flush_interval: float = 1.0,
        batch_size: int = 5000,
        max_buffer: int = 100_000,
        spool_dir: str | os.PathLike | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
        timeout: float = 10.0,
        tags: dict[str, str] | None = None,
    ):
        """`url` and `token` default to $PERFDASH_URL and $PERFDASH_TOKEN. `spool_dir`
        defaults to ~/.cache/perfdash/spool/<agent>; pass spool_dir="" to keep unsent
        batches in memory only (still within `max_buffer`). `tags` are added to every point
        (a point's own tags win); they default to $PERFDASH_TAGS, e.g. "version=1.3.0,variant=b".
        Bad tags raise ValueError here rather than get every batch rejected later."""
        self.tags = default_tags(tags)
        url = url or os.environ.get("PERFDASH_URL", "http://127.0.0.1:8000")
        token = token or os.environ.get("PERFDASH_TOKEN", "")
        self.node = node or os.environ.get("PERFDASH_NODE") or socket.gethostname()
        self.agent = (
            agent
            or os.environ.get("PERFDASH_AGENT")
            or f"{Path(os.sys.argv[0]).stem or 'agent'}-{os.getpid()}"
        )
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.dropped = 0  # points given up on: buffer full, spool full or rejected by the server
        self.sent = 0
        self._transport = Transport(url, token, timeout)
        self._url, self._token, self._timeout = url, token, timeout  # events have their own connection
        if spool_dir is None:
            spool_dir = Path.home() / ".cache" / "perfdash" / "spool" / _safe(self.agent)
        self._spool = Spool(spool_dir, spool_max_bytes) if spool_dir else None
        self._pending: list[tuple[bytes, int]] = []  # unsent bodies when there is no spool
        self._pending_points = 0
        self._buffer: list[Point] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backoff = Backoff()
        self._resume_at = 0.0
        self._logged_rejections: set[tuple[int | None, str]] = set()
        self._samplers: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._run, name="perfdash-flush", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # --- recording -----------------------------------------------------------------------

    def record(
        self,
        metric: str,
        value: float,
        tags: dict[str, str] | None = None,
        ts: float | None = None,
        *,
        node: str | None = None,
        agent: str | None = None,
    ) -> None:
        # Plain floats and strings here, so a numpy scalar or a Decimal can never fail the
        # encoding of a whole batch later, in the flush thread.
        value = float(value)
        if tags:
            tags = {str(k): str(v) for k, v in tags.items()}
            if self.tags:
                tags = with_defaults(tags, self.tags)
        elif self.tags:
            tags = self.tags  # shared by the points, which are only ever read
        point = (
            time.time() if ts is None else float(ts),
            metric,
            value,
            tags,
            node or self.node,
            agent or self.agent,
        )
        with self._lock:
            if len(self._buffer) + self._pending_points >= self.max_buffer:
                if not self._pending:  # the cap holds: newest data wins over the oldest
                    self.dropped += 1
                    return
                _, n = self._pending.pop(0)
                self._pending_points -= n
                self.dropped += n
            self._buffer.append(point)
            full = len(self._buffer) >= self.batch_size
        if full:
            self._wake.set()

    def timer(self, metric: str, **tags: str) -> Timed:
        return Timed(self, metric, tags or None)

    def response(self, **tags: str) -> Timed:
        """Times an agent's answer to one request: `agent_response_ms`."""
        return Timed(self, AGENT_RESPONSE_MS, tags or None)

    def tool(self, tool: str, **tags: str) -> Timed:
        return Timed(self, TOOL_EXECUTION_MS, {"tool": tool, **tags})

    def llm(self, provider: str, model: str, **tags: str) -> Timed:
        return Timed(self, LLM_CALL_MS, {"provider": provider, "model": model, **tags})

    def memory_op(self, op: str, **tags: str) -> Timed:
        return Timed(self, MEMORY_OP_MS, {"op": op, **tags})

    def count(self, metric: str, n: float = 1, **tags: str) -> None:
        self.record(metric, n, tags or None)

    def error(self, kind: str = "error", **tags: str) -> None:
        self.record(ERRORS_TOTAL, 1, {"error": kind, **tags})

    def tokens(self, n: int, provider: str, model: str, token_type: str | None = None) -> None:
        """Count `n` tokens; `token_type` ("input", "output") is the `type` tag, as
        OpenTelemetry's gen_ai.token.type, so tokens can be read by type."""
        tags = {"provider": provider, "model": model}
        if token_type:
            tags["type"] = token_type
        self.record(TOKENS_TOTAL, n, tags)

    def cache_hit(self, **tags: str) -> None:
        self.record(CACHE_HITS_TOTAL, 1, tags or None)

    def cache_miss(self, **tags: str) -> None:
        self.record(CACHE_MISSES_TOTAL, 1, tags or None)

    def sample_memory(self, every: float = 10.0) -> None:
        """Report this process's resident memory as `agent_memory_bytes` every `every` s."""

        def run() -> None:
            while not self._stop.is_set():
                self.record(AGENT_MEMORY_BYTES, rss_bytes())
                self._stop.wait(every)

        thread = threading.Thread(target=run, name="perfdash-memory", daemon=True)
        thread.start()
        self._samplers.append(thread)

    # --- events ---------------------------------------------------------------------------

    def event(self, kind: str, title: str, *, ts: float | str | None = None, **tags: str) -> bool:
        """Send an event, drawn as a marker on perfdash's time charts:
        `perf.event("deploy", "v1.3.0", version="1.3.0")`. `kind` is "deploy", "config",
        "incident" or "note"; `ts` (Unix seconds or RFC 3339) defaults to now.

        Sent at once from the calling thread, not through the buffer: True once stored; False
        (logged) when refused, or not taken within 30 s of retries (429, 5xx, network
        errors). Events are not spooled. ValueError for an event perfdash would refuse.
        The client's default tags (`tags=`, $PERFDASH_TAGS) come with it, under its own."""
        checked = event_protocol.of(kind, title, with_defaults(tags, self.tags), ts)
        try:
            event_protocol.send(self._url, self._token, checked, timeout=self._timeout)
        except event_protocol.NotSent as exc:
            log.warning("perfdash event %r not stored: %s", checked.title, exc)
            return False
        return True

    # --- state ----------------------------------------------------------------------------

    def buffered(self) -> int:
        """Points held in memory: recorded but not yet sent or spooled."""
        with self._lock:
            return len(self._buffer) + self._pending_points

    def spooled(self) -> int:
        return self._spool.pending_points() if self._spool else 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Ask for a flush now and wait until memory and spool are empty (True), or until a
        send fails or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        self._resume_at = 0.0
        while time.monotonic() < deadline:
            self._wake.set()
            if not self.buffered() and not self.spooled():
                return True
            if self._resume_at > time.monotonic():  # a send failed: the server is away
                return False
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is buffered (spooling what cannot be sent) and stop the thread."""
        if self._stop.is_set():
            return
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._spill()
        self._transport.close()
        if self._spool:
            self._spool.close()
        atexit.unregister(self.close)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the flush thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self._flush_once()
            except Exception:  # the thread must survive anything; the points stay buffered
                log.exception("perfdash flush failed")

    def _flush_once(self) -> None:
        if time.monotonic() < self._resume_at:
            self._spill()
            return
        if not self._send_backlog():
            self._spill()
            return
        with self._lock:
            points, self._buffer = self._buffer, []
        for i in range(0, len(points), self.batch_size):
            chunk = points[i : i + self.batch_size]
            _, body = encode(chunk)
            if not self._deliver(body, len(chunk)):
                self._keep(body, len(chunk))
                for j in range(i + self.batch_size, len(points), self.batch_size):
                    rest = points[j : j + self.batch_size]
                    self._keep(encode(rest)[1], len(rest))
                return

    def _send_backlog(self) -> bool:
        """Send spooled or pending batches, oldest first; False if the server is still away."""
        if self._spool:
            for path in self._spool.files():
                if not self._deliver(path.read_bytes(), Spool.points_in(path)):
                    return False
                path.unlink(missing_ok=True)
        while True:
            with self._lock:
                if not self._pending:
                    break
                body, n = self._pending[0]
            if not self._deliver(body, n):
                return False
            with self._lock:
                if self._pending and self._pending[0][0] is body:
                    self._pending.pop(0)
                    self._pending_points -= n
        return True

    def _deliver(self, body: bytes, points: int) -> bool:
        """True when the batch is done with (stored, or rejected for good)."""
        outcome = self._transport.send(body)
        if outcome.status == "ok":
            self._backoff.reset()
            self.sent += points
            return True
        if outcome.status == "rejected":
            self._reject(outcome, points)
            return True
        delay = self._backoff.next_delay(outcome.retry_after)
        self._resume_at = time.monotonic() + delay
        log.debug(
            "perfdash ingest unavailable (%s %s); retrying in %.1f s", outcome.code, outcome.message, delay
        )
        return False

    def _reject(self, outcome: Outcome, points: int) -> None:
        self.dropped += points
        key = (outcome.code, outcome.message)
        if key not in self._logged_rejections:  # once per distinct error, not per batch
            self._logged_rejections.add(key)
            log.error(
                "perfdash rejected a batch of %d points (HTTP %s): %s; not retrying",
                points,
                outcome.code,
                outcome.message,
            )

    def _keep(self, body: bytes, points: int) -> None:
        if self._spool:
            self._spool.put(body, points)
            self.dropped += self._spool.dropped_points
            self._spool.dropped_points = 0
            return
        with self._lock:
            self._pending.append((body, points))
            self._pending_points += points
            while self._pending_points + len(self._buffer) > self.max_buffer and self._pending:
                _, n = self._pending.pop(0)  # the memory cap holds: drop the oldest
                self._pending_points -= n
                self.dropped += n

    def _spill(self) -> None:
        """While the server is away, move the buffer out of memory (to the spool if any)."""
        with self._lock:
            points, self._buffer = self._buffer, []
        for i in range(0, len(points), self.batch_size):
            chunk = points[i : i + self.batch_size]
            self._keep(encode(chunk)[1], len(chunk))


class Timed:
    """Times a block or a function (sync or async) and records its duration in ms. An
    exception inside counts one `errors_total` (tagged with its class) and is re-raised."""

    __slots__ = ("_client", "_metric", "_start", "_tags")

    def __init__(self, client: Client, metric: str, tags: dict[str, str] | None):
        self._client, self._metric, self._tags = client, metric, tags

    def _done(self, start: float, exc: BaseException | None) -> None:
        self._client.record(self._metric, (time.perf_counter() - start) * 1000.0, self._tags)
        if exc is not None and isinstance(exc, Exception):
            self._client.error(type(exc).__name__, **(self._tags or {}))

    def __enter__(self) -> Timed:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._done(self._start, exc)

    async def __aenter__(self) -> Timed:
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self._done(self._start, exc)

    def __call__(self, fn):
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args, **kwargs):
                start = time.perf_counter()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    self._done(start, exc)
                    raise
                self._done(start, None)
                return result

            return timed_async

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._done(start, exc)
                raise
            self._done(start, None)
            return result

        return timed


def parse_tags(text: str, source: str = "PERFDASH_TAGS") -> dict[str, str]:
    """Tags written as "version=1.3.0,variant=b" (as $PERFDASH_TAGS holds them)."""
    tags = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{source}: {item!r} is not key=value")
        tags[key.strip()] = value.strip()
    return tags


def default_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """`tags` (or $PERFDASH_TAGS when None) as strings, checked by the protocol's rules."""
    if tags is None:
        tags = parse_tags(os.environ.get("PERFDASH_TAGS", ""))
    tags = {str(k): str(v) for k, v in tags.items()}
    try:
        check_tags(tags, DEFAULT_LIMITS)
    except ProtocolError as exc:
        raise ValueError(f"default tags: {exc.message}") from None
    return tags


def with_defaults(tags: dict[str, str], defaults: dict[str, str]) -> dict[str, str]:
    """A point's tags over the defaults; the defaults never push a point past the protocol's
    tag limit (a point with that many tags of its own keeps only those)."""
    merged = {**defaults, **tags}
    return merged if len(merged) <= DEFAULT_LIMITS.max_tags else tags


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "agent"
