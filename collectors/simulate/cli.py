"""`python -m collectors simulate`: the options, and the run (the backfill first, then live
seconds as they pass) through the senders or a dry run."""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass

from collectors.event import Event, NotSent, of, send
from collectors.protocol import DEFAULT_LIMITS, ProtocolError, check_label
from collectors.simulate.send import Batch, DrySink, Progress, Senders, Stats
from collectors.simulate.traffic import (
    DAY,
    HOUR,
    LEAK_S,
    MAX_BACKFILL_S,
    MAX_BATCH_POINTS,
    MINUTE,
    Episode,
    Fleet,
    Window,
    backfill_step,
    backfill_windows,
)


@dataclass
class _Run:
    fleet: Fleet
    sink: Senders | DrySink
    stats: Stats
    batch_size: int
    earlier: Fleet | None = None  # the release before `release_at`, if not the live one
    release_at: float = math.inf

    def emit(self, w: Window, phase: str, fleet: Fleet | None = None) -> bool:
        """Generate, encode and hand over a window's batches; False once sending stopped."""
        batches = (fleet or self.fleet).batches(*w, size=self.batch_size)
        return all(self.sink.put(Batch.of(points, phase)) for points in batches)

    def backfill(self, end: float, seconds: float, step: float) -> bool:
        for w in backfill_windows(self.fleet, end, seconds, step, self.batch_size):
            self.stats.stage = f"backfill {100 * (1 - (end - w.t0) / seconds):3.0f}%"
            cut = min(max(self.release_at, w.t0), w.t1)
            before, after = w._replace(t1=cut), w._replace(t0=cut)
            for part, fleet in ((before, self.earlier), (after, self.fleet)):
                if part.t1 > part.t0 and not self.emit(part, "backfill", fleet):
                    return False
        return True

    def live(self, t0: float, duration: float, realtime: bool) -> None:
        """Whole seconds from t0 on, each sent once it has passed (or at once when not
        `realtime`), for `duration` seconds (0: until interrupted)."""
        began = time.time() if realtime else t0
        end = math.ceil(began + duration) if duration else math.inf
        while t0 < end:
            self.stats.stage = f"live {t0 - began:,.0f} s" if t0 >= began else "live (catching up)"
            t1 = min(math.floor(time.time()) if realtime else t0 + 1, end)
            if t1 <= t0:
                time.sleep(max(0.0, t0 + 1.001 - time.time()))
                continue
            if not self.emit(Window(t0, t1), "live"):
                return
            t0 = t1


def _summary(stats: Stats, dry_run: bool) -> str:
    elapsed = time.monotonic() - stats.started
    total = stats.total()
    text = (
        f"{'generated' if dry_run else 'sent'} {total:,} points in {stats.batches:,} batches"
        f" (backfill {stats.sent['backfill']:,} + live {stats.sent['live']:,}) in {elapsed:.1f} s:"
        f" {total / elapsed:,.0f} points/s; {stats.retries:,} retries, {stats.errors:,} errors"
    )
    if dry_run:
        text += " (dry run: nothing sent)"
    if stats.unsent:
        text += f"\nNOT sent: {stats.unsent:,} points in {stats.unsent_batches:,} batches"
    return text


def _intro(args: argparse.Namespace, fleet: Fleet, step: float) -> str:
    """What is about to happen, and the episodes from yesterday to tomorrow to watch for."""
    target = "generating only (dry run)" if args.dry_run else f"sending to {args.url}"
    lines = [f"simulating {args.agents:,} agents on {args.nodes:,} nodes (seed {args.seed}), {target}"]
    if fleet.version:
        factor = fleet.slowdown.get(fleet.version, 1.0)
        slower = f" ({factor - 1:+.0%} latency)" if factor != 1.0 else ""
        lines.append(f"version {fleet.version}{slower}")
    if args.previous_version:
        ago = f"{_span(args.deployed_ago)} ago" if args.deployed_ago else "when live traffic begins"
        lines.append(f"version {args.previous_version} until the release, {ago}")
    if fleet.variants:
        lines.append("variants (agent i runs variant i mod their number): " + ", ".join(_variants(fleet)))
    if args.backfill:
        lines.append(f"backfill: the last {_span(args.backfill)} first, one tick per {_span(step)}")
    lines.append("episodes (UTC):")
    now = fleet.full_at
    for e in fleet.episodes(now - min(args.backfill, DAY), now + DAY):
        lines.append(f"  {_utc(e.start)} to {_utc(e.end)}  {e.kind} {e.target}")
    return "\n".join(lines)


def _variants(fleet: Fleet) -> list[str]:
    described = []
    for v in fleet.variants:
        factor = fleet.slowdown.get(v, 1.0)
        described.append(f"{v} ({factor - 1:+.0%} latency)" if factor != 1.0 else v)
    return described


def _utc(ts: float) -> str:
    return time.strftime("%a %H:%M", time.gmtime(ts))


def _span(seconds: float) -> str:
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _duration(text: str) -> int:
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90m, 2h, 3d or 14d")
    return int(m.group(1)) * {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY}[m.group(2)]


def _tag_value(text: str) -> str:
    try:
        return check_label(text.strip(), "value", DEFAULT_LIMITS.max_name)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _variant_list(text: str) -> tuple[str, ...]:
    variants = tuple(_tag_value(v) for v in text.split(","))
    if len(set(variants)) < len(variants):
        raise argparse.ArgumentTypeError(f"{text!r} names a variant twice")
    return variants


def _slowdowns(text: str) -> dict[str, float]:
    """ "b=15%" (or "b=15%,c=-5%") as {"b": 1.15}: factors on the variants' latencies."""
    found = {}
    for item in text.split(","):
        m = re.fullmatch(r"\s*([^=]+?)\s*=\s*([-+]?\d+(?:\.\d+)?)%\s*", item)
        if not m or float(m.group(2)) <= -100:
            raise argparse.ArgumentTypeError(f"{item!r} is not VARIANT=PERCENT%, e.g. b=15%")
        found[m.group(1)] = 1 + float(m.group(2)) / 100
    return found


def _leak(text: str) -> tuple[str, int]:
    """ "agent-3=5m" as ("agent-3", 300)."""
    agent, _, delay = text.partition("=")
    if not agent.strip() or not delay:
        raise argparse.ArgumentTypeError(f"{text!r} is not AGENT=DELAY, e.g. agent-3=5m")
    return agent.strip(), _duration(delay)


def _also(args: argparse.Namespace, start: float) -> list[Episode]:
    if not args.leak:
        return []
    agent, delay = args.leak
    begins = start + delay
    return [Episode("memory_leak", begins, begins + LEAK_S, agent, int(agent.removeprefix("agent-")))]


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m collectors simulate",
        description=sys.modules[__package__].__doc__,  # the package's: the model and the sending
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--agents", type=int, default=100, help="fleet size (default 100)")
    ap.add_argument("--nodes", type=int, default=4, help="nodes the agents are spread over (default 4)")
    ap.add_argument("--duration", type=float, default=0, help="seconds of live traffic; 0 = until Ctrl-C")
    ap.add_argument(
        "--url",
        default=os.environ.get("PERFDASH_URL", "http://127.0.0.1:8000"),
        help="the perfdash server (default $PERFDASH_URL or http://127.0.0.1:8000)",
    )
    ap.add_argument(
        "--token", default=os.environ.get("PERFDASH_TOKEN", ""), help="an ingest token ($PERFDASH_TOKEN)"
    )
    ap.add_argument("--backfill", type=_duration, default=0, help="history to send first, e.g. 2h, 3d, 14d")
    ap.add_argument(
        "--backfill-step",
        type=_duration,
        default=None,
        help="one sample tick per step (default: 1m or coarser)",
    )
    ap.add_argument("--senders", type=int, default=2, help="sending threads, one connection each")
    ap.add_argument(
        "--batch-size",
        type=int,
        default=MAX_BATCH_POINTS,
        help="points per batch at most (INGEST_MAX_POINTS)",
    )
    ap.add_argument("--seed", type=int, default=0, help="the same seed gives the same fleet and episodes")
    ap.add_argument("--dry-run", action="store_true", help="generate and encode only, at full speed")
    ap.add_argument(
        "--deploy-event",
        metavar="VERSION",
        help="first post a deploy event tagged version=VERSION at the start of live traffic "
        "(a marker on every time chart)",
    )
    ap.add_argument("--version", type=_tag_value, help="tag every point version=VERSION, e.g. 1.3.0")
    ap.add_argument(
        "--variants",
        type=_variant_list,
        default=(),
        metavar="A,B,...",
        help="split the agents evenly among these variants (agent i runs variant i mod their number) "
        "and tag their points variant=...",
    )
    ap.add_argument(
        "--slowdown",
        type=_slowdowns,
        action="append",
        default=[],
        metavar="VARIANT=PERCENT%",
        help="make a variant's response, tool, LLM and memory-op latencies slower, e.g. b=15%%; "
        "naming the --version, every agent's (1.3.0=10%%); naming an agent, its own (agent-7=60%%); "
        "repeatable",
    )
    ap.add_argument(
        "--episodes",
        choices=("random", "none"),
        default="random",
        help="random: the seed's slow-tool, slow-provider and memory-leak episodes (default); "
        "none: steady traffic, e.g. to count false alarms",
    )
    ap.add_argument(
        "--leak",
        type=_leak,
        metavar="AGENT=DELAY",
        help="a memory leak in this agent (+160 MB over 2 h) that starts DELAY after live traffic "
        "does, besides --episodes, e.g. agent-3=5m",
    )
    ap.add_argument(
        "--previous-version",
        type=_tag_value,
        help="the fleet runs this version (without --version's slowdown) until the release, then "
        "--version: with --deploy-event, a release whose marker a before/after comparison can check",
    )
    ap.add_argument(
        "--deployed-ago",
        type=_duration,
        default=0,
        metavar="DURATION",
        help="the release (--previous-version to --version, and the --deploy-event marker) happened "
        "this long before the start, within --backfill; the marker is posted once the backfill is "
        "sent (default: when live traffic begins)",
    )
    args = ap.parse_args(argv)
    args.slowdown = {k: v for given in args.slowdown for k, v in given.items()}
    if not 1 <= args.nodes <= args.agents:
        ap.error("need 1 <= --nodes <= --agents")
    if args.senders < 1 or args.batch_size < 1 or args.seed < 0 or args.duration < 0:
        ap.error("--senders and --batch-size must be >= 1, --seed and --duration >= 0")
    if args.backfill > MAX_BACKFILL_S:
        ap.error("--backfill can be at most 89d (the server keeps 90 days)")
    if not args.token and not args.dry_run:
        ap.error("--token (or $PERFDASH_TOKEN) is required, unless --dry-run")
    agents = {f"agent-{i}" for i in range(args.agents)}
    unknown = sorted(set(args.slowdown) - set(args.variants) - {args.version} - agents)
    if unknown:
        ap.error(f"--slowdown names {', '.join(unknown)}: not one of --variants, --version or the agents")
    if args.leak and args.leak[0] not in agents:
        ap.error(f"--leak names {args.leak[0]}: not one of the agents")
    if args.previous_version and not (args.version and args.backfill):
        ap.error("--previous-version needs --version and --backfill")
    if args.deployed_ago and not args.deployed_ago < args.backfill:
        ap.error("--deployed-ago must be shorter than --backfill: the release happens within it")
    if args.deploy_event is not None:
        try:
            _deploy(args.deploy_event, time.time())
        except ValueError as exc:
            ap.error(f"--deploy-event: {exc}")
    return args


def _deploy(version: str, ts: float) -> Event:
    return of("deploy", f"version {version}", {"version": version}, ts)


def _post_deploy(args: argparse.Namespace, ts: float) -> None:
    """The --deploy-event marker, sent as the SDK sends events; a fleet whose marker cannot be
    stored runs all the same."""
    try:
        send(args.url, args.token, _deploy(args.deploy_event, ts))
    except NotSent as exc:
        print(f"perfdash simulate: the deploy event was not stored: {exc}", file=sys.stderr)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _finish(sink) -> None:
    """Send what is queued; a second Ctrl-C gives up on it (and the summary says so)."""
    try:
        sink.close()
    except KeyboardInterrupt:
        print("\nabandoning the batches not yet sent", file=sys.stderr)
        sink.abandon()


def run(args: argparse.Namespace) -> int:
    start = math.floor(time.time())
    fleet = Fleet(
        args.agents,
        args.nodes,
        args.seed,
        full_at=start,
        version=args.version or "",
        variants=args.variants,
        slowdown=args.slowdown,
        episodes=None if args.episodes == "random" else [],
        also=_also(args, start),
    )
    earlier = None
    if args.previous_version:
        slowdown = {k: v for k, v in args.slowdown.items() if k != args.version}
        earlier = Fleet(
            args.agents,
            args.nodes,
            args.seed,
            full_at=start,
            version=args.previous_version,
            variants=args.variants,
            slowdown=slowdown,
            episodes=None if args.episodes == "random" else [],
            also=_also(args, start),
        )
    stats = Stats()
    try:
        sink = DrySink(stats) if args.dry_run else Senders(args.url, args.token, args.senders, stats)
    except ValueError as exc:  # a malformed --url
        print(f"perfdash simulate: {exc}", file=sys.stderr)
        return 2
    step = args.backfill_step or backfill_step(args.agents, args.backfill)
    print(_intro(args, fleet, step), file=sys.stderr)
    release_at = start - args.deployed_ago
    marker = args.deploy_event is not None and not args.dry_run
    if marker and not args.deployed_ago:
        _post_deploy(args, release_at)
    progress = Progress(stats)
    simulation = _Run(fleet, sink, stats, args.batch_size, earlier, release_at)
    try:
        if not args.backfill or simulation.backfill(start, args.backfill, step):
            # A release in the past is marked once its history is sent: a verification of it
            # finds the data it compares.
            if marker and args.deployed_ago:
                _post_deploy(args, release_at)
            simulation.live(start, args.duration, realtime=not args.dry_run)
    except KeyboardInterrupt:
        stats.stage = "stopping"
        print("\nstopping: sending what is queued (Ctrl-C again to give up on it)", file=sys.stderr)
    _finish(sink)
    progress.stop()
    print(_summary(stats, args.dry_run), flush=True)
    if sink.rejected is not None:
        r = sink.rejected
        print(f"perfdash simulate: the server rejected a batch (HTTP {r.code}): {r.message}", file=sys.stderr)
    return 1 if stats.unsent else 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `docker stop` too sends what is queued
    return run(args)
