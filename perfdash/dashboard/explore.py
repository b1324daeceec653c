"""The explorer (/explore/): any metric that has been seen, any statistics, filters and a
breakdown, as plain data from the query module.

The page's URL is the view (`Explore.from_params`): the read API's names where they exist
(`metric`, `stat`, `window`, `step`, `node`, `agent`, `tag.K`), plus `group` and `top` for a
breakdown and `ratio` for one of a few fixed ratios of two counters (`RATIOS`). The first
paint reads `/data/explore` with the page's parameters; the live socket sends the same data
again whenever points are committed (consumers.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

from django.conf import settings

from collectors.protocol import COUNTER_SUFFIX, LATENCY_SUFFIX
from perfdash.dashboard import compare_page, panels
from perfdash.lib import units
from perfdash.lib.durations import DAY_S, HOUR_S, parse_duration
from perfdash.metrics import keys, query
from perfdash.metrics.models import WELL_KNOWN_METRICS
from perfdash.metrics.scope import QueryError, Scope, check_text, window_seconds
from perfdash.otlp.models import coarse_note

PAGE = "explore"
DEFAULT_METRIC = compare_page.DEFAULT_METRIC
DEFAULT_TOP = 5
# Steps a default is chosen from: the first that gives at most MAX_DEFAULT_POINTS points.
STEPS = (60, 300, 600, 1800, HOUR_S, 3 * HOUR_S, 6 * HOUR_S, 12 * HOUR_S, DAY_S)
MAX_DEFAULT_POINTS = 120
HISTOGRAM_BUCKETS = 40
PARAMS = {"metric", "ratio", "stat", "window", "step", "node", "agent", "group", "top"}
PRECISION = (
    "Percentiles are read from sketches and are within 1 % of exact; counts, sums, minima "
    "and maxima are exact."
)


@dataclass(frozen=True)
class Ratio:
    """A ratio of sums: each term is (metric, "sum" of its values or "count" of its points)."""

    title: str
    formula: str
    numerator: tuple[tuple[str, str], ...]
    denominator: tuple[tuple[str, str], ...]
    events: str  # what the denominator counts (lookups, responses): the table's count column

    @property
    def metrics(self) -> list[str]:
        return sorted({m for m, _ in (*self.numerator, *self.denominator)})


# The ratios the explorer offers, defined once: a fixed set, not a query language.
RATIOS = {
    "hit_rate": Ratio(
        "Cache hit rate",
        "cache_hits_total / (cache_hits_total + cache_misses_total)",
        (("cache_hits_total", "sum"),),
        (("cache_hits_total", "sum"), ("cache_misses_total", "sum")),
        "lookups",
    ),
    "error_ratio": Ratio(
        "Errors per response",
        "errors_total / responses (points of agent_response_ms)",
        (("errors_total", "sum"),),
        (("agent_response_ms", "count"),),
        "responses",
    ),
    "tokens_per_response": Ratio(
        "Tokens per response",
        "tokens_total / responses (points of agent_response_ms)",
        (("tokens_total", "sum"),),
        (("agent_response_ms", "count"),),
        "responses",
    ),
}


def kind_of(metric: str) -> str:
    """latency, counter, gauge or "" (unknown), from the well-known list, else the name's suffix."""
    if metric in WELL_KNOWN_METRICS:
        return WELL_KNOWN_METRICS[metric]
    if metric.endswith((LATENCY_SUFFIX, "_seconds")):
        return "latency"
    if metric.endswith(COUNTER_SUFFIX):
        return "counter"
    return ""


DEFAULT_STATS = {"latency": ("p95",), "counter": ("rate",), "gauge": ("max",), "": ("avg",)}


def default_step(window_s: int) -> int:
    """About 60 to 120 points; whole hours where minute rollups may no longer be kept."""
    hourly = window_s > settings.MINUTE_ROLLUP_RETENTION_DAYS * DAY_S - HOUR_S
    for step in STEPS:
        if window_s % step == 0 and window_s // step <= MAX_DEFAULT_POINTS and not (hourly and step % HOUR_S):
            return step
    return window_s  # one point: a window of odd length


def seen_metrics() -> list[str]:
    return compare_page.seen_metrics()


@dataclass(frozen=True)
class Explore:
    """The explorer's view, as its URL gives it."""

    page: str = PAGE
    metric: str = DEFAULT_METRIC
    ratio: str = ""
    stats: tuple[str, ...] = ("p95",)
    window: str = "1h"
    step: str = ""
    node: str = ""
    agent: str = ""
    tag_key: str = ""
    tag_value: str = ""
    group: str = ""
    top: int = DEFAULT_TOP

    @classmethod
    def from_params(cls, params, strict: bool = True) -> Explore:
        """From a QueryDict (several `stat=` may repeat). QueryError names the parameter at
        fault; `strict`: unknown parameters are errors too (as in the read API)."""
        get = lambda name: (params.get(name) or "").strip()  # noqa: E731
        if strict:
            for name in params:
                if name not in PARAMS and not name.startswith("tag.") and name != "page":
                    raise QueryError(name, f"unknown parameter {name!r}")
        ratio = get("ratio")
        if ratio and ratio not in RATIOS:
            raise QueryError("ratio", f"ratio must be one of {', '.join(RATIOS)}")
        metric = get("metric") or (RATIOS[ratio].metrics[0] if ratio else DEFAULT_METRIC)
        check_text("metric", metric)
        if len(metric) > 128:
            raise QueryError("metric", "metric names have at most 128 characters")
        stats = tuple(dict.fromkeys(s.strip() for s in params.getlist("stat") if s.strip()))
        for stat in stats:
            if stat not in query.STATS:
                raise QueryError("stat", f"stat must be one of {', '.join(query.STATS)}")
        window = get("window") or "1h"
        seconds = window_seconds("window", window)
        if seconds % 60:
            raise QueryError("window", "window must be a whole number of minutes")
        step = get("step")
        if step:
            _check_step(seconds, step)
        tags = [k for k in params if k.startswith("tag.")]
        if len(tags) > 1:
            raise QueryError(tags[1], "at most one tag filter (tag.K=V)")
        tag_key = tags[0][4:] if tags else ""
        tag_value = get(tags[0]) if tags else ""
        node, agent = get("node")[:128], get("agent")[:128]
        Scope(node=node, agent=agent, tag_key=tag_key, tag_value=tag_value)  # checks them
        group = get("group")
        if group and group not in (allowed := query.breakdowns()):
            raise QueryError("group", f"group must be one of {', '.join(allowed)}")
        if group and tag_key and group not in ("node", "agent"):
            raise QueryError("group", "each stored row carries one tag: group by a tag without a tag filter")
        top = get("top") or str(DEFAULT_TOP)
        if not top.isdigit() or not 1 <= int(top) <= settings.BREAKDOWN_TOP_N:
            raise QueryError("top", f"top must be a whole number from 1 to {settings.BREAKDOWN_TOP_N}")
        return cls(
            metric=metric,
            ratio=ratio,
            stats=stats or DEFAULT_STATS[kind_of(metric)],
            window=window,
            step=step,
            node=node,
            agent=agent,
            tag_key=tag_key,
            tag_value=tag_value,
            group=group,
            top=int(top),
        )

    @property
    def seconds(self) -> int:
        return parse_duration(self.window)

    @property
    def step_seconds(self) -> int:
        return parse_duration(self.step) if self.step else default_step(self.seconds)

    @property
    def scope(self) -> Scope:
        return Scope(node=self.node, agent=self.agent, tag_key=self.tag_key, tag_value=self.tag_value)

    @property
    def counter(self) -> bool:
        return kind_of(self.metric) == "counter"

    def only(self) -> list[str] | None:
        """The groups the filters allow: a breakdown's members are per node whatever the node
        filter, so grouping by node within node N is N alone."""
        return [self.node] if self.group == "node" and self.node else None

    def key(self) -> tuple:
        return tuple(asdict(self).values())

    def query(self) -> dict[str, str | list[str]]:
        """The view as URL parameters (what the page's URL holds)."""
        out: dict[str, str | list[str]] = {"ratio": self.ratio} if self.ratio else {"metric": self.metric}
        if not self.ratio:
            out["stat"] = list(self.stats)
        out.update(window=self.window, step=self.step or duration(self.step_seconds))
        for name in ("node", "agent", "group"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.tag_key:
            out[f"tag.{self.tag_key}"] = self.tag_value
        if self.group:
            out["top"] = str(self.top)
        return out


def _check_step(window_s: int, step: str) -> None:
    """The rules query.read_window holds a series to, checked before any read so that the page
    itself answers 400."""
    try:
        step_s = parse_duration(step)
    except ValueError as exc:
        raise QueryError("step", str(exc)) from None
    if step_s % 60:
        raise QueryError("step", "step must be a whole number of minutes")
    if window_s % step_s or window_s // step_s > query.MAX_SERIES_POINTS:
        most = query.MAX_SERIES_POINTS
        raise QueryError("step", f"window must be a multiple of step, at most {most} steps")
    if step_s % HOUR_S and window_s > settings.MINUTE_ROLLUP_RETENTION_DAYS * DAY_S - HOUR_S:
        days = settings.MINUTE_ROLLUP_RETENTION_DAYS
        raise QueryError("step", f"steps under 1h are kept for {days} days; use step=1h for this window")


def duration(seconds: int) -> str:
    for unit, size in (("d", DAY_S), ("h", HOUR_S), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def build(view: Explore, now: float | None = None) -> dict:
    """The page's data: time series, histogram (latency-like metrics), the groups' table,
    "alert on this", the metrics there are (the list grows live) and the events to mark."""
    now = time.time() if now is None else now
    with keys.pinned():  # one look for new rollup keys, not one per read
        data = chart(view, now)
        data["metrics"] = seen_metrics()
    data["events"] = events(view, now)
    return data


def chart(view: Explore, now: float) -> dict:
    """The view's chart and table without the page's metric list and events: a board's panel
    (the caller pins the rollup keys, once for all its panels)."""
    data = _ratio(view, now) if view.ratio else _metric(view, now)
    data["view"] = asdict(view)
    data["query"] = view.query()
    data["step"] = duration(view.step_seconds)
    data["range"] = query.window(view.seconds, now)  # the x axis of an empty chart
    return data


def events(view: Explore, now: float) -> list[dict]:
    """The events the view's charts mark (those of its node or agent, and the untagged)."""
    return panels.events(view, now - view.seconds, now)


def _metric(view: Explore, now: float) -> dict:
    metric, stats, counter = view.metric, list(view.stats), view.counter
    # A counter's rate is the sum of its values per second (as compare's), not points per second.
    read = sorted({"sum" if counter and s == "rate" else s for s in stats} | {"count"})
    kind = kind_of(metric)
    out = {
        "kind": kind,
        "title": metric,
        "seen": query.known_metric(metric),
        "stats": stats,
        "units": {s: _unit(metric, s) for s in stats},
        "notes": [PRECISION] if any(s in query.PERCENTILES for s in stats) else [],
    }
    coarse = coarse_note(metric, view.seconds, now) if out["notes"] else None
    if coarse:
        out["notes"].append(coarse)
    if counter and "rate" in stats:
        out["notes"].append(f"rate: the sum of {metric}'s values per second.")
    elif "rate" in stats:
        out["notes"].append("rate: points per second.")
    if not out["seen"]:
        out.update(t=[], lines=[], histogram=None, rows=[], alert=_no_alert("no data yet"))
        return out
    window_s, step_s = view.seconds, view.step_seconds
    scope_ids = keys.ids(metric, view.scope)
    names, members = [], {}
    top = None
    if view.group:
        top = query.top(metric, window_s, view.group, view.top, view.scope, now=now, names=view.only())
        names = list(top.rows)
        for key, name in keys.members(metric, view.group, view.scope):
            if name in top.rows:
                members.setdefault(name, []).append(key)
    window = query.read_window(
        sorted({*scope_ids, *(k for ids in members.values() for k in ids)}), window_s, step_s, now
    )
    latency = kind == "latency"
    whole = window.panel(scope_ids, read, buckets=HISTOGRAM_BUCKETS if latency else 1)
    series = {"": whole["series"]} | {n: window.panel(members[n], read, buckets=0)["series"] for n in names}
    out["t"] = [t for t, _ in whole["series"]["count"]]
    out["lines"] = [
        {"group": name, "stat": s, "values": _values(series[name], s, counter, step_s)}
        for name in ([*names, ""] if names else [""])
        for s in stats
    ]
    out["histogram"] = _rounded(whole["histogram"]) if latency else None
    # The rate over the part of the window that has passed, as `top` gives its groups'.
    everything = {**whole["stats"], "rate": whole["stats"]["count"] / window.elapsed}
    rows = []
    if top is not None:
        rows = [_row(view, name, values) for name, values in top.rows.items()]
        if top.others:
            rows.append({**_row(view, "others", top.others), "others": top.folded})
    if everything["count"]:
        rows.append({**_row(view, "all", everything), "all": True})
    out["rows"] = rows
    out["alert"] = _alert(view, everything)  # a rule's rate is points per second
    return out


def _values(series: dict, stat: str, counter: bool, step_s: int) -> list[float | None]:
    if counter and stat == "rate":
        return [None if v is None else v / step_s for _, v in series["sum"]]
    return [v for _, v in series[stat]]


def _row(view: Explore, name: str, values: dict) -> dict:
    values = dict(values)
    if view.counter and values.get("count"):
        values["rate"] *= values["sum"] / values["count"]  # points per second -> values per second
    return {
        "name": name,
        "count": values["count"],
        "values": {s: _clean(values.get(s)) for s in view.stats},
        "shown": {s: units.readable(values.get(s), units.of_metric(view.metric, s)) for s in view.stats},
    }


def _clean(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _unit(metric: str, stat: str) -> str:
    return units.base_unit(units.of_metric(metric, stat))


def _rounded(histogram: dict) -> dict:
    """Bucket edges to 4 significant digits: they only place bars on a log axis."""
    return {
        **histogram,
        "buckets": [
            {**b, "lower": float(f"{b['lower']:.4g}"), "upper": float(f"{b['upper']:.4g}")}
            for b in histogram["buckets"]
        ],
    }


# Statistics an alert rule can watch (perfdash/alerts/models.py: every one but the sum).
ALERTABLE = tuple(s for s in query.STATS if s != "sum")


def _alert(view: Explore, everything: dict) -> dict:
    """The admin's rule form prefilled with this view: its metric, the first percentile (else
    the first statistic) a rule can watch, the filters, and the value over the window as the
    threshold, typed in the statistic's units as the form takes it (perfdash/lib/units.py)."""
    # A percentile first: what a latency alert watches, whichever order the boxes are in.
    ordered = sorted(view.stats, key=lambda s: s not in query.PERCENTILES)
    stat = next((s for s in ordered if s in ALERTABLE), None)
    if stat is None:
        return _no_alert("alert rules cannot watch a sum: choose another statistic")
    if view.counter and stat == "rate":
        return _no_alert("alert rules read a rate as points per second, not a counter's values per second")
    value = everything.get(stat)
    if value is None or not math.isfinite(value):
        return _no_alert("no value in this window to start the threshold from")
    kind = units.of_metric(view.metric, stat)
    threshold = units.display(float(f"{value:.4g}"), kind)
    scope = view.group if view.group in ("node", "agent") else "fleet"
    params = {
        "name": f"{view.metric} {stat}"[:200],
        "metric": view.metric,
        "statistic": stat,
        "scope": scope,
        "node": view.node,
        "agent": view.agent,
        "tag_key": view.tag_key,
        "tag_value": view.tag_value,
        "threshold": threshold,
        "window_seconds": view.seconds,
    }
    query_string = urlencode({k: v for k, v in params.items() if v != ""})
    return {"url": f"/admin/alerts/alertrule/add/?{query_string}", "statistic": stat, "threshold": threshold}


def _no_alert(why: str) -> dict:
    return {"url": None, "why": why}


def _ratio(view: Explore, now: float) -> dict:
    """A fixed ratio of sums per step and over the window, for the scope and, with a group,
    for each of its first groups by events (the denominator: lookups, responses), the others
    together in the table. Under panels.MIN_RATIO_EVENTS events a step or a row has no value."""
    ratio = RATIOS[view.ratio]
    out = {
        "kind": "ratio",
        "title": ratio.title,
        "formula": ratio.formula,
        "stats": ["ratio"],
        "units": {"ratio": ""},
        "count_name": ratio.events,
        "notes": [
            f"{ratio.title}: {ratio.formula}, per step and over the window (exact).",
            f"A step or a row with fewer than {panels.MIN_RATIO_EVENTS} {ratio.events} has no value: "
            "a ratio of so few says little.",
        ],
        "histogram": None,
        "alert": _no_alert("alert rules watch one metric, not a ratio"),
    }
    whole = {m: keys.ids(m, view.scope) for m in ratio.metrics}
    out["seen"] = any(whole.values())
    window = query.read_window(
        sorted({k for i in whole.values() for k in i}), view.seconds, view.step_seconds, now
    )
    terms = _Terms(ratio)
    series = {"": _series(window, whole)}
    rows = []
    if view.group:
        members = _ratio_members(view, ratio)
        every = [k for of_group in members.values() for ids in of_group.values() for k in ids]
        # Groups with points in the window only, as a metric's breakdown: a tool seen yesterday
        # is no row of today's table.
        per_group = {n: p for n, p in _totals(window.totals(every), members).items() if _seen(p)}
        ranked = sorted(per_group, key=lambda n: (-terms.events(per_group[n]), n))
        first, rest = ranked[: view.top], ranked[view.top :]
        tops = query.read_window(
            sorted({k for n in first for ids in members[n].values() for k in ids}),
            view.seconds,
            view.step_seconds,
            now,
        )
        series |= {n: _series(tops, members[n]) for n in first}
        rows = [_ratio_row(view, terms, n, per_group[n]) for n in first]
        if rest:
            others = {part: sum(per_group[n][part] for n in rest) for part in per_group[rest[0]]}
            rows.append({**_ratio_row(view, terms, "others", others), "others": len(rest)})
    out["t"] = [t for t, _ in series[""][ratio.metrics[0], "count"]]
    out["lines"] = [
        {"group": name, "stat": "ratio", "values": terms.per_step(s, len(out["t"]))}
        for name, s in [*((n, s) for n, s in series.items() if n), ("", series[""])]
    ]
    over = {part: sum(v or 0.0 for _, v in values) for part, values in series[""].items()}
    if terms.events(over):
        rows.append({**_ratio_row(view, terms, "all", over), "all": True})
    out["rows"] = rows
    return out


@dataclass(frozen=True)
class _Terms:
    """A ratio's numerator and denominator from {(metric, "count" or "sum"): value}."""

    ratio: Ratio

    def events(self, parts: dict) -> float:
        return sum(parts.get(term, 0.0) or 0.0 for term in self.ratio.denominator)

    def value(self, parts: dict) -> float | None:
        events = self.events(parts)
        if events < panels.MIN_RATIO_EVENTS:
            return None
        return sum(parts.get(term, 0.0) or 0.0 for term in self.ratio.numerator) / events

    def per_step(self, series: dict, steps: int) -> list[float | None]:
        return [self.value({part: values[i][1] for part, values in series.items()}) for i in range(steps)]


def _series(window: query.Window, ids: dict[str, list[int]]) -> dict[tuple[str, str], list]:
    """{(metric, "count" or "sum"): [(t, value), ...]} of each metric's keys."""
    out = {}
    for metric, of_metric in ids.items():
        got = window.panel(of_metric, ["count", "sum"], buckets=0)["series"]
        out |= {(metric, part): values for part, values in got.items()}
    return out


def _ratio_members(view: Explore, ratio: Ratio) -> dict[str, dict[str, list[int]]]:
    """group name -> metric -> its keys in that group."""
    out: dict[str, dict[str, list[int]]] = {}
    only = view.only()
    for metric in ratio.metrics:
        for key, name in keys.members(metric, view.group, view.scope):
            if only is None or name in only:
                out.setdefault(name, {m: [] for m in ratio.metrics})[metric].append(key)
    return out


def _totals(totals: dict[int, tuple[int, float]], members: dict) -> dict[str, dict]:
    """group name -> {(metric, "count" or "sum"): its total over the window}."""
    out = {}
    for name, of_group in members.items():
        parts = {}
        for metric, ids in of_group.items():
            got = [totals.get(k, (0, 0.0)) for k in ids]
            parts[metric, "count"] = float(sum(n for n, _ in got))
            parts[metric, "sum"] = float(sum(v for _, v in got))
        out[name] = parts
    return out


def _seen(parts: dict) -> bool:
    return any(n for (_, part), n in parts.items() if part == "count")


def _ratio_row(view: Explore, terms: _Terms, name: str, parts: dict) -> dict:
    events = terms.events(parts)
    value = terms.value(parts)
    if value is None:
        shown = f"too few {terms.ratio.events} ({events:.0f} < {panels.MIN_RATIO_EVENTS})"
    elif view.ratio == "hit_rate":
        shown = f"{value * 100:.3g} %"
    else:
        shown = f"{value:.3g}"
    return {"name": name, "count": int(events), "values": {"ratio": value}, "shown": {"ratio": shown}}
