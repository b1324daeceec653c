"""A regression gate for CI: is the candidate slower than the baseline, with confidence, by
more than we accept?

    python -m collectors check --url http://perfdash:8000 --metric agent_response_ms \\
        --baseline tag.version=1.2.0 --candidate tag.version=1.3.0 --max-regression 5%

Each metric is one `GET /api/v1/compare` (docs/read-api.md#compare), the baseline its cohort
`a` and the candidate its cohort `b`, with `min_effect` = the largest regression accepted: the
server's verdict `slower` is then "the interval excludes no change and the estimate is over
--max-regression", which is what fails the gate. The answer is printed as a table (or
Markdown), optionally written as a JUnit report, and summed up in the exit status:

    0  no metric regressed beyond --max-regression
    1  at least one did
    2  the gate could not decide: a bad argument, the server unreachable or refusing the token,
       an unknown metric or parameter, or too few points in a cohort (unless
       --allow-insufficient). 2 wins over 1: a run that could not check everything fails as
       an error even when it found a regression too.

Requests go through the ingest Transport's connection and URL handling (a GET instead of its
batch POST); nothing here imports Django.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlencode

from collectors.options import add_server, require_server
from collectors.protocol import instant
from collectors.transport import Transport, _error_text

COMPARE_PATH = "/api/v1/compare"
STATS = ("mean", "p50", "p90", "p95", "p99", "rate")
FILTER_KEYS = ("node", "agent")  # and tag.K: the read API's names
TIMEOUT_S = 60.0
PROG = "perfdash check"
MISSING = "\N{EN DASH}"  # a value that is not there (insufficient data)

SLOWER, FASTER, NO_CHANGE, INSUFFICIENT = "slower", "faster", "no_change", "insufficient_data"
ERROR = "error"  # ours: the server refused this metric's comparison (400 or 404)
SHOWN = {
    SLOWER: "REGRESSION",
    FASTER: "faster",
    NO_CHANGE: "ok",
    INSUFFICIENT: "insufficient data",
    ERROR: "error",
}


class Fatal(Exception):
    """Nothing can be checked: the server is unreachable, refuses the token, or answers
    something that is not a comparison."""


@dataclass
class Row:
    """One metric's comparison, as the table, the Markdown and the JUnit report show it."""

    metric: str
    stat: str
    verdict: str  # the server's verdict for `stat`, or ERROR
    a_count: int | None = None
    b_count: int | None = None
    a_value: float | None = None
    b_value: float | None = None
    rel: float | None = None
    lo: float | None = None
    hi: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str = ""  # why the server refused it, for ERROR


class Reader(Transport):
    """GETs from one read API endpoint (`path`) over the Transport's keep-alive connection."""

    def __init__(self, url: str, token: str, timeout: float, path: str):
        super().__init__(url, token, timeout, path)
        self.url = url

    def get(self, params: list[tuple[str, str]]) -> tuple[int, bytes]:
        """(HTTP status, body) of a GET of `path` with these parameters; Fatal when no answer
        came."""
        headers = {"Authorization": self._headers["Authorization"], "Accept": "application/json"}
        try:
            conn = self._connection()
            conn.request("GET", f"{self.path}?{urlencode(params)}", headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Fatal(f"no answer from {self.url}: {type(exc).__name__}: {exc}") from None


def compare(reader: Reader, metric: str, params: list[tuple[str, str]], stat: str) -> Row:
    """One metric compared; Fatal for an answer that concerns every metric (401, 403, 5xx)."""
    code, data = reader.get([("metric", metric), *params])
    if code in (400, 404):
        return Row(metric, stat, ERROR, error=f"HTTP {code}: {_refusal(data)}")
    if code != 200:
        raise Fatal(f"HTTP {code}: {_error_text(data)}")
    try:
        return row_of(metric, stat, json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Fatal(f"the server's answer for {metric} is not a comparison ({exc!r})") from None


def _refusal(data: bytes) -> str:
    """The read API's `{"error": ..., "param": ...}` in words."""
    try:
        body = json.loads(data)
        error, param = body["error"], body.get("param")
    except (ValueError, KeyError, TypeError):
        return _error_text(data)
    return f"{error} (parameter {param})" if param and param not in error else str(error)


def row_of(metric: str, stat: str, body: dict) -> Row:
    """A row from a `GET /api/v1/compare` answer (keys it does not need are ignored)."""
    diff = body["diff"][stat]
    verdict = diff["verdict"]
    if verdict not in SHOWN or verdict == ERROR:
        raise ValueError(f"unknown verdict {verdict!r}")

    def value(cohort: dict) -> float | None:
        estimate = cohort.get(stat)
        return None if estimate is None else float(estimate["value"])

    def number(x: object) -> float | None:
        return None if x is None else float(x)

    return Row(
        metric,
        stat,
        verdict,
        int(body["a"]["count"]),
        int(body["b"]["count"]),
        value(body["a"]),
        value(body["b"]),
        number(diff["rel"]),
        number(diff["lo"]),
        number(diff["hi"]),
        [str(n) for n in body.get("notes", [])],
    )


def exit_status(rows: list[Row], allow_insufficient: bool) -> int:
    if any(r.verdict == ERROR or (r.verdict == INSUFFICIENT and not allow_insufficient) for r in rows):
        return 2
    return 1 if any(r.verdict == SLOWER for r in rows) else 0


# --- output ------------------------------------------------------------------------------------


def number_text(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return MISSING
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def percent_text(x: float) -> str:
    return f"{x * 100:+.1f} %"


def cells(row: Row) -> list[str]:
    """metric, stat, baseline, candidate, change, verdict."""

    def cohort(value: float | None, count: int | None) -> str:
        return MISSING if count is None else f"{number_text(value)} (n={count:,})"

    if row.rel is None or row.lo is None or row.hi is None:
        change = MISSING
    else:
        change = f"{percent_text(row.rel)} [{percent_text(row.lo)}, {percent_text(row.hi)}]"
    return [
        row.metric,
        row.stat,
        cohort(row.a_value, row.a_count),
        cohort(row.b_value, row.b_count),
        change,
        SHOWN[row.verdict],
    ]


def headers(confidence: float) -> list[str]:
    return ["metric", "stat", "baseline", "candidate", f"change [{confidence:.0%} interval]", "verdict"]


def why(row: Row) -> str:
    """What a row that decided nothing lacks, in one line ("" for the others)."""
    if row.verdict == ERROR:
        return row.error
    if row.verdict == INSUFFICIENT:  # the first shortfall the server noted of each cohort
        short = {n[:2]: n for n in reversed(row.notes) if n[:2] in ("a ", "b ") and "fewer than" in n}
        said = [
            f"{name} {short[c][2:]}" for c, name in (("a ", "baseline"), ("b ", "candidate")) if c in short
        ]
        return " ".join(said) or "not enough data"
    return ""


def summary(rows: list[Row], args: argparse.Namespace) -> str:
    slower = sum(r.verdict == SLOWER for r in rows)
    said = f"{slower} of {len(rows)} metric{'s' * (len(rows) != 1)} slower by more than "
    said += f"{percent_text(args.max_regression)[1:]} with {args.confidence:.0%} confidence"
    return f"{said}: baseline {describe(args, 'baseline')}, candidate {describe(args, 'candidate')}"


def describe(args: argparse.Namespace, name: str) -> str:
    """A cohort as given: its filters ("the fleet" for none) and the ends of its range."""
    said = [f"{k}={v}" for k, v in getattr(args, name)] or ["the fleet"]
    said += [f"{end} {t}" for end in ("from", "to") if (t := getattr(args, f"{name}_{end}")) is not None]
    return " ".join(said)


def table(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [headers(args.confidence), *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    lacking = [f"{r.metric}: {why(r)}" for r in rows if why(r)]
    return "\n".join([*out, *([""] if lacking else []), *lacking, "", summary(rows, args)]) + "\n"


def markdown(rows: list[Row], args: argparse.Namespace) -> str:
    def escaped(text: str) -> str:
        return text.replace("|", "\\|")

    status = exit_status(rows, args.allow_insufficient)
    title = {0: "no regression", 1: "regression", 2: "could not decide"}[status]
    head = headers(args.confidence)
    out = [
        f"### perfdash check: {title}",
        "",
        f"Baseline `{describe(args, 'baseline')}`, candidate `{describe(args, 'candidate')}`; "
        f"a regression is slower by more than {percent_text(args.max_regression)[1:]}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" if i in (2, 3, 4) else "---" for i in range(len(head))) + "|",
    ]
    for r in rows:
        shown = cells(r)
        shown[0] = f"`{shown[0]}`"
        shown[5] = f"**{shown[5]}**" if r.verdict in (SLOWER, ERROR) else shown[5]
        out.append("| " + " | ".join(escaped(c) for c in shown) + " |")
    lacking = [f"- `{r.metric}`: {escaped(why(r))}" for r in rows if why(r)]
    out += ["", *lacking, *([""] if lacking else []), summary(rows, args) + "."]
    return "\n".join(out) + "\n"


def junit(rows: list[Row], args: argparse.Namespace) -> bytes:
    """One testcase per metric: a regression is a failure; a refused comparison an error, and
    so is insufficient data unless --allow-insufficient makes it a skip."""
    suite = ET.Element("testsuite", name="perfdash check")
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname="perfdash.check", name=f"{r.metric} {r.stat}")
        line = "  ".join(f"{h}: {c}" for h, c in zip(headers(args.confidence), cells(r), strict=True))
        if r.verdict == SLOWER:
            counts["failures"] += 1
            message = f"{r.metric} {r.stat} {cells(r)[4]}: slower by more than "
            message += percent_text(args.max_regression)[1:]
            ET.SubElement(case, "failure", message=message, type="regression").text = line
        elif r.verdict == ERROR or (r.verdict == INSUFFICIENT and not args.allow_insufficient):
            counts["errors"] += 1
            ET.SubElement(case, "error", message=why(r), type=r.verdict).text = line
        elif r.verdict == INSUFFICIENT:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=why(r))
        ET.SubElement(case, "system-out").text = "\n".join([line, *r.notes])
    suite.attrib.update({"tests": str(len(rows)), **{k: str(v) for k, v in counts.items()}})
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# --- python -m collectors check ----------------------------------------------------------------


def _filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. tag.version=1.2.0)")
    if key not in FILTER_KEYS and not (key.startswith("tag.") and len(key) > 4):
        raise argparse.ArgumentTypeError(f"{key!r} is not a filter: use node=, agent= or tag.NAME=")
    return key, value


def _fraction(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, or 0% to 100%, not {text!r}")
    return value


def _confidence(text: str) -> float:
    value = _fraction(text)
    if not 0.5 <= value <= 0.99:
        raise argparse.ArgumentTypeError(f"must be from 0.5 to 0.99 (or 50% to 99%), not {text!r}")
    return value


def _instant(text: str) -> str:
    """RFC 3339 with a time zone, or Unix seconds; sent as given."""
    try:
        instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m collectors check",
        description="A regression gate for CI: compare metrics between a baseline and a candidate "
        "cohort (GET /api/v1/compare) and fail when the candidate is slower, with confidence, by "
        "more than --max-regression.",
        epilog="Exit status: 0 no metric regressed; 1 at least one metric is slower beyond "
        "--max-regression; 2 an error (a bad argument, the server unreachable, a refused token, "
        "an unknown metric or parameter) or too few points to decide (unless "
        "--allow-insufficient). 2 wins over 1.",
    )
    add_server(p, "read", 8000)
    p.add_argument(
        "--metric",
        action="append",
        required=True,
        metavar="NAME",
        help="a metric to check, repeatable: --metric agent_response_ms --metric llm_call_ms",
    )
    for name, cohort in (("baseline", "a"), ("candidate", "b")):
        p.add_argument(
            f"--{name}",
            type=_filter,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a filter of the {name} (compare's cohort {cohort}), repeatable: tag.NAME=VALUE "
            "(at most one tag), node=NODE, agent=AGENT; e.g. "
            f"--{name} tag.version={'1.2.0' if cohort == 'a' else '1.3.0'} --{name} node=node-1",
        )
    p.add_argument(
        "--window",
        metavar="DURATION",
        help="the time range of both cohorts: the last DURATION (e.g. 30m, 1h, 7d; the server's "
        "default is 1h), or DURATION before a --*-to / after a --*-from",
    )
    for name in ("baseline", "candidate"):
        for end in ("from", "to"):
            p.add_argument(
                f"--{name}-{end}",
                type=_instant,
                metavar="TIME",
                help=f"the {name}'s range {'starts' if end == 'from' else 'ends'} here: RFC 3339 "
                "with a time zone or Unix seconds",
            )
    p.add_argument(
        "--stat",
        choices=STATS,
        default="p95",
        help="the statistic compared (default: %(default)s; counters such as errors_total have only rate)",
    )
    p.add_argument(
        "--max-regression",
        type=_fraction,
        default=0.05,
        metavar="FRACTION",
        help="the largest slowdown accepted, 5%% or 0.05 (default: 5%%)",
    )
    p.add_argument(
        "--confidence",
        type=_confidence,
        default=0.95,
        metavar="FRACTION",
        help="of the intervals, 0.5 to 0.99 or 50%% to 99%% (default: 0.95)",
    )
    p.add_argument(
        "--allow-insufficient",
        action="store_true",
        help="report a cohort with too few points but do not fail for it (exit 0 or 1, not 2)",
    )
    p.add_argument(
        "--format",
        choices=("table", "markdown"),
        default="table",
        help="stdout as a plain table or a Markdown one, e.g. for $GITHUB_STEP_SUMMARY "
        "(default: %(default)s)",
    )
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report, one testcase per metric")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=TIMEOUT_S,
        metavar="SECONDS",
        help="for each request (default: %(default)g)",
    )
    return p


def query(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The compare parameters of every metric's request."""
    params = [(f"a.{k}", v) for k, v in args.baseline] + [(f"b.{k}", v) for k, v in args.candidate]
    params += [
        (f"{cohort}.{end}", given)
        for cohort, name in (("a", "baseline"), ("b", "candidate"))
        for end in ("from", "to")
        if (given := getattr(args, f"{name}_{end}")) is not None
    ]
    if args.window:
        params.append(("window", args.window))
    return [
        *params,
        ("stat", args.stat),
        ("min_effect", repr(args.max_regression)),
        ("confidence", repr(args.confidence)),
    ]


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    require_server(parser, args)
    for name in ("baseline", "candidate"):
        keys = [k for k, _ in getattr(args, name)]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice:
            parser.error(f"--{name} gives {twice} twice")
    try:
        reader = Reader(args.url, args.token, args.timeout, path=COMPARE_PATH)
    except ValueError as exc:  # a malformed --url
        parser.error(str(exc))
    params = query(args)
    metrics = list(dict.fromkeys(args.metric))
    rows = []
    try:
        for metric in metrics:
            rows.append(compare(reader, metric, params, args.stat))
    except Fatal as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    finally:
        reader.close()
    for r in rows:
        if r.verdict == ERROR:
            print(f"{PROG}: {r.metric}: {r.error}", file=sys.stderr)
        elif r.verdict == INSUFFICIENT and not args.allow_insufficient:
            print(f"{PROG}: {r.metric}: insufficient data: {why(r)}", file=sys.stderr)
    sys.stdout.write(markdown(rows, args) if args.format == "markdown" else table(rows, args))
    sys.stdout.flush()
    if args.junit:
        try:
            with open(args.junit, "wb") as f:
                f.write(junit(rows, args))
        except OSError as exc:
            print(f"{PROG}: cannot write {args.junit}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    return exit_status(rows, args.allow_insufficient)
