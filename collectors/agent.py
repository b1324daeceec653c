"""The node collector agent: one long-running process per node that forwards what the agents
on the node report, merged into large batches, through one `Client` to perfdash:

- StatsD / DogStatsD datagrams over UDP (see `collectors.statsd` for the mapping);
- ingest API v1 bodies POSTed without a token to a local HTTP endpoint, so an agent in any
  language (or the SDK, pointed at it) needs neither a token nor a route to the server;
- the resident memory of agent processes found by pid files or a command-line pattern.

    python -m collectors agent --url http://perfdash:8000 --token pd_… --pid-dir /run/agents

Every point is checked against the server's rules before it joins a batch: the server
rejects a whole batch for one bad point, and a merged batch holds the points of many agents.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from collectors import statsd
from collectors.client import Client
from collectors.spool import SpoolBusy
from collectors.transport import Point

log = logging.getLogger("perfdash.collectors.agent")

INGEST_PATH = "/api/v1/ingest"

# The server's rules (README, "Ingest API v1"), repeated because collectors never import the
# server. The time window is narrower than the server's 10 minutes ahead / 90 days back:
# node and server clocks may differ, and a point may wait in the buffer or the spool.
NAME_MAX = 128
TAGS_MAX = 16
MAX_POINTS = 10_000
MAX_BODY = 10 * 1024 * 1024
MAX_FUTURE_S = 300.0
MAX_AGE_S = 89 * 86400.0
KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.]*\Z")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
NON_NEGATIVE_SUFFIXES = ("_ms", "_seconds", "_bytes", "_total")
POINT_FIELDS = frozenset(("ts", "node", "agent", "metric", "value", "tags"))
REQUIRED_FIELDS = ("ts", "node", "agent", "metric", "value")

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # absorbs bursts; the kernel caps it at rmem_max
RECENT_BATCH_IDS = 10_000
DISTINCT_PROBLEMS_LOGGED = 100


# --- the server's point rules ----------------------------------------------------------------


class BadPoint(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_point(
    metric: object, node: object, agent: object, tags: object, ts: object, value: object, now: float
) -> Point:
    """The point as `Client.record` takes it, or BadPoint naming what the server would refuse."""
    check_key(metric, "metric")
    check_label(node, "node")
    check_label(agent, "agent")
    return (check_ts(ts, now), metric, check_value(value, metric), check_tags(tags), node, agent)


def check_key(name: object, field: str) -> None:
    if type(name) is not str:
        raise BadPoint(field, f"{field} must be a string")
    if not 1 <= len(name) <= NAME_MAX:
        raise BadPoint(field, f"{field} must be 1 to {NAME_MAX} characters")
    if not KEY.match(name):
        raise BadPoint(field, f"{field} may only use letters, digits, '_' and '.', not starting with a digit")


def check_label(name: object, field: str) -> None:
    if type(name) is not str:
        raise BadPoint(field, f"{field} must be a string")
    if not 1 <= len(name) <= NAME_MAX:
        raise BadPoint(field, f"{field} must be 1 to {NAME_MAX} characters")
    if CONTROL_CHARS.search(name):
        raise BadPoint(field, f"{field} must not contain control characters")


def check_tags(tags: object) -> dict[str, str] | None:
    if tags is None:
        return None
    if type(tags) is not dict:
        raise BadPoint("tags", "tags must be an object of strings")
    if len(tags) > TAGS_MAX:
        raise BadPoint("tags", f"too many tags: {len(tags)} > {TAGS_MAX}")
    for key, value in tags.items():
        check_key(key, f"tags.{key}")
        check_label(value, f"tags.{key}")
    return tags or None


def check_ts(ts: object, now: float) -> float:
    if type(ts) is str:
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            raise BadPoint("ts", "ts must be an RFC 3339 timestamp or Unix seconds") from None
        if parsed.tzinfo is None:
            raise BadPoint("ts", "ts needs a time zone offset (e.g. 'Z')")
        seconds = parsed.timestamp()
    elif type(ts) in (int, float):
        seconds = finite(ts, "ts")
    else:
        raise BadPoint("ts", "ts must be an RFC 3339 timestamp or Unix seconds")
    if not now - MAX_AGE_S <= seconds <= now + MAX_FUTURE_S:
        raise BadPoint(
            "ts", f"ts must be within {MAX_AGE_S / 86400:.0f} days back and {MAX_FUTURE_S:.0f} s ahead of now"
        )
    return seconds


def check_value(value: object, metric: str) -> float:
    if type(value) not in (int, float):  # not bool: JSON true is no measurement
        raise BadPoint("value", "value must be a number")
    v = finite(value, "value")
    if v < 0 and metric.endswith(NON_NEGATIVE_SUFFIXES):
        raise BadPoint("value", f"{metric} cannot be negative")
    return v


def finite(number: int | float, field: str) -> float:
    try:
        v = float(number)
    except OverflowError:  # an integer beyond any float
        v = math.inf
    if not math.isfinite(v):
        raise BadPoint(field, f"{field} must be finite")
    return v


def record(client: Client, point: Point) -> None:
    ts, metric, value, tags, node, agent = point
    client.record(metric, value, tags, ts, node=node, agent=agent)


class OncePerProblem:
    """Logs each distinct problem once: a misbehaving sender repeats its mistake thousands of
    times a second. Bounded, since problems quote what senders send."""

    def __init__(self, limit: int = DISTINCT_PROBLEMS_LOGGED):
        self._seen: set[str] = set()
        self._limit = limit

    def warn(self, problem: str, example: str) -> None:
        if problem in self._seen or len(self._seen) >= self._limit:
            return
        self._seen.add(problem)
        log.warning("%s (logged once), e.g. %s", problem, example[:200])


# --- the local ingest endpoint ---------------------------------------------------------------


class BadRequest(Exception):
    def __init__(self, status: int, message: str, point: int | None = None, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.point, self.field = status, message, point, field

    def as_json(self) -> dict:
        body: dict = {"error": self.message}
        if self.point is not None:
            body["point"] = self.point
        if self.field is not None:
            body["field"] = self.field
        return body


def decode_body(body: bytes, content_type: str, content_encoding: str) -> bytes:
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise BadRequest(415, f"Content-Type must be application/json, not {content_type or 'missing'!r}")
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise BadRequest(415, f"Content-Encoding {content_encoding!r} is not supported; use gzip")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_BODY + 1)  # bounds what a gzip bomb can take
    except zlib.error as exc:
        raise BadRequest(400, f"body is not valid gzip: {exc}") from None
    if len(out) > MAX_BODY:
        raise BadRequest(413, f"decompressed body is larger than {MAX_BODY} bytes")
    if not inflater.eof:
        raise BadRequest(400, "body is not valid gzip: truncated stream")
    return out


def parse_body(raw: bytes, now: float) -> tuple[str | None, list[Point]]:
    """The batch id and points of a v1 body, or BadRequest saying what and where."""
    try:
        doc = json.loads(raw)  # the stdlib takes NaN, so the error can name the point
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"malformed JSON: {exc}") from None
    if type(doc) is not dict:
        raise BadRequest(400, "body must be a JSON object with a `points` list")
    unknown = sorted(set(doc) - {"batch_id", "points"})
    if unknown:
        raise BadRequest(400, f"unknown top-level field {unknown[0]!r}", field=unknown[0])
    batch_id = doc.get("batch_id")
    if batch_id is not None:
        try:
            check_label(batch_id, "batch_id")
        except BadPoint as exc:
            raise BadRequest(400, str(exc), field="batch_id") from None
    points = doc.get("points")
    if type(points) is not list or not points:
        raise BadRequest(400, "`points` must be a non-empty list", field="points")
    if len(points) > MAX_POINTS:
        raise BadRequest(413, f"too many points: {len(points)} > {MAX_POINTS} per body", field="points")
    return batch_id, [point_from_json(p, i, now) for i, p in enumerate(points)]


def point_from_json(p: object, i: int, now: float) -> Point:
    if type(p) is not dict:
        raise BadRequest(400, "each point must be a JSON object", point=i)
    unknown = sorted(set(p) - POINT_FIELDS)
    if unknown:
        raise BadRequest(400, f"unknown field {unknown[0]!r}", point=i, field=unknown[0])
    missing = [f for f in REQUIRED_FIELDS if f not in p]
    if missing:
        raise BadRequest(400, "missing field", point=i, field=missing[0])
    try:
        return check_point(p["metric"], p["node"], p["agent"], p.get("tags"), p["ts"], p["value"], now)
    except BadPoint as exc:
        raise BadRequest(400, str(exc), point=i, field=exc.field) from None


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
            batch_id, points = parse_body(decode_body(body, content_type, content_encoding), time.time())
        except BadRequest as exc:
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
        if urlsplit(self.path).path != INGEST_PATH:
            return self._reply(404, {"error": f"not found; POST to {INGEST_PATH}"}, close=True)
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self._reply(411, {"error": "Content-Length is required"}, close=True)
        if int(length) > MAX_BODY:
            return self._reply(413, {"error": f"body is larger than {MAX_BODY} bytes"}, close=True)
        body = self.rfile.read(int(length))
        status, answer = self.server.ingest.handle(
            body, self.headers.get("Content-Type", ""), self.headers.get("Content-Encoding", "")
        )
        self._reply(status, answer)

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
    def __init__(self, host: str, port: int, ingest: LocalIngest):
        self.address_family = address_family(host)
        self.ingest = ingest
        super().__init__((host, port), IngestHandler)


# --- StatsD over UDP ---------------------------------------------------------------------------


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
                point = check_point(
                    p.metric,
                    p.node or self.client.node,
                    p.agent or self.default_agent,
                    p.tags,
                    now if p.ts is None else p.ts,
                    p.value,
                    now,
                )
            except BadPoint as exc:
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


def address_family(host: str) -> socket.AddressFamily:
    return socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)[0][0]


# --- process sampling --------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentProcess:
    agent: str
    process: psutil.Process


def find_agents(
    pid_dir: Path | None, pattern: re.Pattern[str] | None, problems: OncePerProblem
) -> list[AgentProcess]:
    """Live agent processes, one per pid; a pid file's name wins over a pattern's guess."""
    found: dict[int, AgentProcess] = {}
    if pattern is not None:
        for proc in psutil.process_iter(["name", "cmdline", "status"]):
            info = proc.info
            text = f"{info['name'] or ''} {' '.join(info['cmdline'] or ())}"
            if info["status"] != psutil.STATUS_ZOMBIE and pattern.search(text):
                found[proc.pid] = AgentProcess(f"{info['name']}-{proc.pid}", proc)
    if pid_dir is not None:
        for path in sorted(pid_dir.glob("*.pid")):
            proc = from_pid_file(path, problems)
            if proc is not None:
                found[proc.pid] = AgentProcess(path.stem, proc)
    found.pop(os.getpid(), None)  # a pattern like "agent" also matches this process
    return list(found.values())


def from_pid_file(path: Path, problems: OncePerProblem) -> psutil.Process | None:
    try:
        text = path.read_text().strip()
        written = path.stat().st_mtime
    except OSError:  # removed since it was listed
        return None
    if not text.isdigit():
        problems.warn(f"pid file {path} does not hold a pid", repr(text[:50]))
        return None
    try:
        proc = psutil.Process(int(text))
        # A pid file left behind by a dead agent may name a pid the system has reused: a
        # process started after the file was written is not the agent that wrote it.
        stale = proc.create_time() > written + 1 or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:  # no such process: the agent is gone
        return None
    return None if stale else proc


def sample_agents(client: Client, agents: list[AgentProcess]) -> None:
    live = 0
    for a in agents:
        try:
            rss = a.process.memory_info().rss
        except psutil.Error:  # it exited since it was found
            continue
        client.record("agent_memory_bytes", rss, agent=a.agent)
        live += 1
    client.record("active_agents", live)


def sample_forever(
    client: Client, pid_dir: Path | None, pattern: re.Pattern[str] | None, every: float, stop: threading.Event
) -> None:
    problems = OncePerProblem()
    while True:
        try:
            sample_agents(client, find_agents(pid_dir, pattern, problems))
        except Exception:  # e.g. an unreadable pid dir; the next round may do better
            log.exception("process sampling failed")
        if stop.wait(every):
            return


# --- the process -------------------------------------------------------------------------------


def regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:  # argparse reports only ValueError and TypeError as usage errors
        raise argparse.ArgumentTypeError(f"not a regular expression: {exc}") from None


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, not {value}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m collectors agent",
        description="The perfdash node agent: forwards StatsD/DogStatsD over UDP, ingest API v1 "
        "bodies POSTed locally without a token, and agent processes' memory to perfdash.",
    )
    env = os.environ.get
    p.add_argument(
        "--url",
        default=env("PERFDASH_URL"),
        help="perfdash server, e.g. http://perfdash:8000 (default: $PERFDASH_URL)",
    )
    p.add_argument(
        "--token",
        default=env("PERFDASH_TOKEN"),
        help="ingest token (default: $PERFDASH_TOKEN, which keeps it out of `ps`)",
    )
    p.add_argument(
        "--node",
        default=env("PERFDASH_NODE") or socket.gethostname(),
        help="this node's name (default: $PERFDASH_NODE or the hostname)",
    )
    p.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address the listeners bind to (default: %(default)s)",
    )
    p.add_argument(
        "--statsd-port",
        type=port,
        default=8125,
        metavar="PORT",
        help="StatsD UDP port (default: %(default)s)",
    )
    p.add_argument(
        "--http-port",
        type=port,
        default=8126,
        metavar="PORT",
        help=f"HTTP port of the local POST {INGEST_PATH}, no token needed (default: %(default)s)",
    )
    p.add_argument(
        "--default-agent",
        default="statsd",
        help="agent of StatsD points that carry no `agent` tag (default: %(default)s)",
    )
    p.add_argument(
        "--pid-dir",
        type=Path,
        metavar="DIR",
        help="directory of <agent-name>.pid files; each live one is sampled as that agent",
    )
    p.add_argument(
        "--process-pattern",
        type=regex,
        metavar="REGEX",
        help="regular expression searched in each process's name and command line; "
        "matches are sampled as agent <process name>-<pid>",
    )
    p.add_argument(
        "--sample-every",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds between samples of agent_memory_bytes and active_agents (default: %(default)s)",
    )
    p.add_argument(
        "--spool-dir",
        metavar="DIR",
        help="where unsent batches wait while the server is away; '' keeps them in memory "
        "(default: ~/.cache/perfdash/spool/node-agent-<node>)",
    )
    return p


class NodeAgent:
    def __init__(self, client: Client, args: argparse.Namespace):
        self.client = client
        self.args = args
        self.stop = threading.Event()
        self.statsd = StatsdForwarder(client, args.default_agent)
        self.ingest = LocalIngest(client)
        self.udp = UdpListener(args.bind, args.statsd_port, self.statsd.handle)
        try:
            self.http = LocalHttpServer(args.bind, args.http_port, self.ingest)
        except OSError:
            self.udp.close()
            raise
        self.threads = [
            threading.Thread(target=self.udp.serve, args=(self.stop,), name="statsd"),
            threading.Thread(target=self.http.serve_forever, name="local-ingest"),
        ]
        self.sampling = bool(args.pid_dir or args.process_pattern)
        if self.sampling:
            sampler = (client, args.pid_dir, args.process_pattern, args.sample_every, self.stop)
            self.threads.append(threading.Thread(target=sample_forever, args=sampler, name="sampler"))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def shut_down(self) -> None:
        """Stop listening and sampling, then flush what is buffered (or spool it)."""
        self.stop.set()
        self.http.shutdown()
        for thread in self.threads:
            thread.join()
        self.http.server_close()
        self.udp.close()
        self.client.close()

    def describe(self) -> str:
        udp_host, udp_port = self.udp.address[:2]
        http_host, http_port = self.http.server_address[:2]
        return (
            f"perfdash node agent for node {self.client.node}: StatsD on udp://{udp_host}:{udp_port}, "
            f"ingest API v1 on http://{http_host}:{http_port}{INGEST_PATH}, {self._sampling_text()}; "
            f"sending to {self.args.url}"
        )

    def _sampling_text(self) -> str:
        if not self.sampling:
            return "no process sampling (give --pid-dir or --process-pattern)"
        sources = []
        if self.args.pid_dir:
            sources.append(f"pid files in {self.args.pid_dir}")
        if self.args.process_pattern:
            sources.append(f"processes matching {self.args.process_pattern.pattern!r}")
        return f"sampling {' and '.join(sources)} every {self.args.sample_every:g} s"

    def summary(self) -> str:
        s, i, c = self.statsd, self.ingest, self.client
        return (
            f"perfdash node agent stopped: {s.points} StatsD points ({s.malformed} malformed, "
            f"{s.ignored} ignored), {i.points} local ingest points ({i.refused} requests refused); "
            f"{c.sent} sent, {c.spooled()} spooled, {c.dropped} dropped"
        )


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url or not args.token:
        parser.error("--url and --token are required (or $PERFDASH_URL and $PERFDASH_TOKEN)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # Explicit, whatever the SDK's defaults: a node's merged traffic wants large batches.
        client = Client(
            args.url,
            args.token,
            node=args.node,
            agent=f"node-agent-{args.node}",
            batch_size=5000,
            flush_interval=1.0,
            spool_dir=args.spool_dir,
        )
    except (ValueError, OSError, SpoolBusy) as exc:
        print(f"perfdash node agent: {exc}", file=sys.stderr)
        return 2
    try:
        agent = NodeAgent(client, args)
    except OSError as exc:
        print(f"perfdash node agent: cannot listen on {args.bind}: {exc}", file=sys.stderr)
        client.close()
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: agent.stop.set())
    agent.start()
    print(agent.describe(), flush=True)
    agent.stop.wait()
    agent.shut_down()
    print(agent.summary(), flush=True)
    return 0
