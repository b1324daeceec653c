"""Overhead of the collector SDK on the code it times.

Times N iterations of an empty block, then the same block inside `with perf.tool(...)`,
then a plain function against the same function decorated, all in one run, with the
client flushing to a local HTTP receiver in the background as it would in production.
Prints ns per timed block above the empty baseline; target <= 5 µs per recorded point.

    .venv/bin/python bench/sdk.py
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors import Client


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def per_iteration_ns(fn, n: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn(n)
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200_000)
    n = ap.parse_args().n
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    perf = Client(
        f"http://127.0.0.1:{server.server_address[1]}",
        "pd_bench",
        node="n",
        agent="a",
        spool_dir="",
        max_buffer=10 * n,
        batch_size=5000,
    )

    def empty(k: int) -> None:
        for _ in range(k):
            pass

    def timed_block(k: int) -> None:
        tool = perf.tool
        for _ in range(k):
            with tool("web_search"):
                pass

    def plain() -> None:
        pass

    decorated = perf.tool("web_search")(plain)

    def calls(fn):
        def run(k: int) -> None:
            for _ in range(k):
                fn()

        return run

    base = per_iteration_ns(empty, n)
    block = per_iteration_ns(timed_block, n)
    call = per_iteration_ns(calls(plain), n)
    deco = per_iteration_ns(calls(decorated), n)
    perf.close()
    server.shutdown()
    print(f"empty block              {base:8.0f} ns")
    print(f"with perf.tool(...)      {block:8.0f} ns   overhead {block - base:6.0f} ns per recorded point")
    print(f"plain call               {call:8.0f} ns")
    print(f"@perf.tool(...) call     {deco:8.0f} ns   overhead {deco - call:6.0f} ns per recorded point")
    print(f"target: <= 5000 ns; sent {perf.sent:,} points, dropped {perf.dropped}")


if __name__ == "__main__":
    main()
