"""Events: deploys, config changes, incidents and notes, which perfdash draws as markers on
its time charts.

    python -m collectors event --url http://perfdash:8001 deploy "v1.3.0" --tag version=1.3.0

What a valid event is (`POST /api/v1/events`) lives here once, as the points' rules live in
protocol.py: the server checks bodies with `check`, and the senders (this command and the
SDK's `Client.event`) check an event before sending it. `send` posts one event through the
ingest Transport, retrying 429, 5xx and network errors with backoff for up to `retry_for`
seconds; an event is not spooled.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from collectors.options import add_server, require_server
from collectors.protocol import (
    DEFAULT_LIMITS,
    Limits,
    ProtocolError,
    check_label,
    check_tags,
    loads,
    parse_ts,
)
from collectors.transport import Backoff, Outcome, Transport

EVENTS_PATH = "/api/v1/events"
KINDS = ("deploy", "config", "incident", "note")
TITLE_MAX = 200
FIELDS = frozenset(("ts", "kind", "title", "tags"))
# An event is a few hundred bytes; its largest valid body (16 tags of 128-character names and
# values, a 200-character title) is well under this.
MAX_BODY = 64 * 1024
RETRY_FOR_S = 30.0


@dataclass(frozen=True)
class Event:
    ts: float  # Unix seconds
    kind: str
    title: str
    tags: dict[str, str]

    def body(self) -> bytes:
        """The gzip-compressed JSON body of `POST /api/v1/events`."""
        doc = {"ts": self.ts, "kind": self.kind, "title": self.title, "tags": self.tags}
        return gzip.compress(json.dumps(doc, separators=(",", ":")).encode())


def check(doc: object, now: float, limits: Limits = DEFAULT_LIMITS) -> Event:
    """The event of a parsed body, or ProtocolError naming the field at fault."""
    if type(doc) is not dict:
        raise ProtocolError("body must be a JSON object with `kind` and `title`")
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        raise ProtocolError(f"unknown field {unknown[0]!r}", field=unknown[0])
    kind = doc.get("kind")
    if kind is None:
        raise ProtocolError("missing field", field="kind")
    if type(kind) is not str or kind not in KINDS:
        raise ProtocolError(f"kind must be one of {', '.join(KINDS)}", field="kind")
    title = check_label(doc.get("title"), "title", TITLE_MAX)
    tags = dict(check_tags(doc.get("tags"), limits))
    ts = doc.get("ts")
    return Event(now if ts is None else parse_ts(ts, now, limits), kind, title, tags)


def parse(raw: bytes, now: float, limits: Limits = DEFAULT_LIMITS) -> Event:
    """The event of a request body's JSON text (see `check`)."""
    return check(loads(raw), now, limits)


def of(
    kind: str, title: str, tags: Mapping[str, object] | None = None, ts: float | str | None = None
) -> Event:
    """An event built in Python (the SDK, this command), checked: ValueError if perfdash would
    refuse it. Tag values are turned into strings, as the SDK's points' are."""
    doc = {"kind": kind, "title": title, "tags": {str(k): str(v) for k, v in (tags or {}).items()}}
    if ts is not None:
        doc["ts"] = ts
    try:
        return check(doc, time.time())
    except ProtocolError as exc:
        raise ValueError(exc.message) from None


class NotSent(Exception):
    """The server refused the event (`code`: its HTTP status), or could not take it before
    the retries ran out (`code`: the last status, None after a network error)."""

    def __init__(self, message: str, code: int | None):
        super().__init__(message)
        self.code = code


def send(
    url: str,
    token: str,
    event: Event,
    *,
    retry_for: float = RETRY_FOR_S,
    timeout: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Post `event` now, from this thread; NotSent if it was not stored. ValueError for a
    malformed `url`. An event whose answer is lost on the way back may be stored twice."""
    transport = Transport(url, token, timeout, path=EVENTS_PATH)
    body = event.body()
    backoff = Backoff()
    deadline = time.monotonic() + retry_for
    try:
        while True:
            outcome = transport.send(body)
            if outcome.status == "ok":
                return
            if outcome.status == "rejected":
                raise NotSent(_said(outcome), outcome.code)
            delay = backoff.next_delay(outcome.retry_after)
            if time.monotonic() + delay > deadline:
                raise NotSent(f"gave up after {retry_for:g} s: {_said(outcome)}", outcome.code)
            sleep(delay)
    finally:
        transport.close()


def _said(outcome: Outcome) -> str:
    return f"HTTP {outcome.code}: {outcome.message}" if outcome.code else outcome.message


# --- python -m collectors event --------------------------------------------------------------


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _ts(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # an RFC 3339 timestamp, checked with the rest of the event


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m collectors event",
        description="Send one event to perfdash, drawn as a marker on every time chart at its time.",
        epilog="Exit status: 0 stored; 1 refused by the server, or not reachable within "
        "--retry-for; 2 a bad argument or an event perfdash would refuse.",
    )
    p.add_argument("kind", choices=KINDS, help="what happened")
    p.add_argument("title", help=f"one line, at most {TITLE_MAX} characters, e.g. v1.3.0")
    p.add_argument(
        "--tag",
        type=_tag,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a tag, repeatable, e.g. --tag version=1.3.0 --tag node=node-2 "
        "(an event tagged node=X shows on node X's pages and the fleet's only)",
    )
    p.add_argument("--ts", type=_ts, help="when: RFC 3339 or Unix seconds (default: now)")
    add_server(p, "ingest", 8001)
    p.add_argument(
        "--retry-for",
        type=_seconds,
        default=RETRY_FOR_S,
        metavar="SECONDS",
        help="keep retrying 429, 5xx and network errors this long (default: %(default)g)",
    )
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    require_server(parser, args)
    try:
        event = of(args.kind, args.title, dict(args.tag), args.ts)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        send(args.url, args.token, event, retry_for=args.retry_for)
    except ValueError as exc:  # a malformed --url
        parser.error(str(exc))
    except NotSent as exc:
        print(f"perfdash event: not stored: {exc}", file=sys.stderr)
        return 1
    print(f"perfdash event: {event.kind} {event.title!r} stored", flush=True)
    return 0
