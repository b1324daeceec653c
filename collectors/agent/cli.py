"""The node agent's process: its options, the listeners and sampler it runs, and `main`."""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path

from collectors.agent.local_ingest import LocalHttpServer, LocalIngest
from collectors.agent.otlp import OTLP_PATH, OtlpForwarder
from collectors.agent.processes import sample_forever
from collectors.agent.udp import StatsdForwarder, UdpListener
from collectors.client import Client, default_tags
from collectors.options import add_server, require_server
from collectors.protocol import INGEST_PATH
from collectors.spool import SpoolBusy


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


def tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value, e.g. version=1.3.0")
    try:
        default_tags({key: value})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m collectors agent",
        description="The perfdash node agent: forwards StatsD/DogStatsD over UDP, ingest API v1 "
        "bodies POSTed locally without a token, and agent processes' memory to perfdash.",
    )
    env = os.environ.get
    add_server(p, "ingest", 8001)
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
        "--tag",
        type=tag,
        action="append",
        metavar="KEY=VALUE",
        help="a tag added to every point forwarded, unless the point has that tag already, e.g. "
        "version=1.3.0; repeat for more (default: $PERFDASH_TAGS, e.g. version=1.3.0,variant=b)",
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
        self.otlp = OtlpForwarder(args.url, args.token)
        self.udp = UdpListener(args.bind, args.statsd_port, self.statsd.handle)
        try:
            self.http = LocalHttpServer(args.bind, args.http_port, self.ingest, self.otlp)
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
        self.otlp.close()
        self.client.close()

    def describe(self) -> str:
        udp_host, udp_port = self.udp.address[:2]
        http_host, http_port = self.http.server_address[:2]
        return (
            f"perfdash node agent for node {self.client.node}: StatsD on udp://{udp_host}:{udp_port}, "
            f"ingest API v1 on http://{http_host}:{http_port}{INGEST_PATH} "
            f"and OTLP/HTTP on http://{http_host}:{http_port}{OTLP_PATH}, {self._sampling_text()}; "
            f"{self._tags_text()}sending to {self.args.url}"
        )

    def _tags_text(self) -> str:
        if not self.client.tags:
            return ""
        return f"tagging every point {','.join(f'{k}={v}' for k, v in self.client.tags.items())}; "

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
            f"{s.ignored} ignored), {i.points} local ingest points ({i.refused} requests refused), "
            f"{self.otlp.exports} OTLP exports passed on ({self.otlp.failed} not); "
            f"{c.sent} sent, {c.spooled()} spooled, {c.dropped} dropped"
        )


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    require_server(parser, args)
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
            tags=dict(args.tag) if args.tag else None,
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
