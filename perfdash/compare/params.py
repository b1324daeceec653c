"""A comparison as asked for in a URL's parameters (GET /api/v1/compare, docs/read-api.md).

Each cohort's parameters are the read API's, prefixed `a.` or `b.` (`a.tag.version=1.2.0`,
`b.node=node-2`), plus a time range: `from` and `to` (RFC 3339 or Unix seconds), or a
`window` ending now, or one end and a `window`. A parameter without a prefix applies to each
cohort that does not give its own: `window=1h&a.tag.version=1.2.0&b.tag.version=1.3.0` is an
A/B over the last hour, `window=1h&a.to=T&b.from=T` the hour before T against the hour after.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings

from collectors.protocol import instant
from perfdash.compare.cohorts import Cohort, stats_for
from perfdash.compare.compare import Options
from perfdash.lib.durations import DAY_S
from perfdash.metrics import query
from perfdash.metrics.dimensions import dimension_tags
from perfdash.metrics.scope import QueryError, check_text, scope_from, window_seconds

PREFIXES = ("a.", "b.")
COHORT_PARAMS = ("window", "from", "to", "node", "agent", "except_agent")
OTHER_PARAMS = ("metric", "stat", "min_effect", "confidence", "by", "histograms")
DEFAULT_WINDOW = "1h"


@dataclass(frozen=True)
class Asked:
    metric: str
    a: Cohort
    b: Cohort
    options: Options
    by: str  # a dimension tag to break the comparison down by, or ""
    histograms: bool


def parse(params: Mapping[str, str], now: float) -> Asked:
    """Raises QueryError naming the parameter at fault."""
    _check_names(params)
    metric = params.get("metric", "")
    if not metric:
        raise QueryError("metric", "metric is required")
    check_text("metric", metric)
    a, b = (_cohort(params, prefix, now) for prefix in PREFIXES)
    if a == b:
        raise QueryError(
            "b",
            "a and b are the same cohort: give them different filters (a.tag.version=...) or "
            "times (a.to=...)",
        )
    options = _options(params, stats_for(metric))
    return Asked(metric, a, b, options, _by(params, a, b), _flag(params, "histograms"))


def _by(params: Mapping[str, str], a: Cohort, b: Cohort) -> str:
    by = params.get("by", "")
    if not by:
        return ""
    if by not in (tags := dimension_tags()):
        raise QueryError("by", f"by must be one of {', '.join(tags)}")
    if a.scope.tag_key or b.scope.tag_key:
        raise QueryError(
            "by", "a breakdown needs cohorts without a tag filter: each rollup row holds one tag"
        )
    return by


def _flag(params: Mapping[str, str], name: str) -> bool:
    text = params.get(name, "0")
    if text not in ("0", "1", "true", "false"):
        raise QueryError(name, f"{name} must be 1 or 0")
    return text in ("1", "true")


def _check_names(params: Mapping[str, str]) -> None:
    allowed = {*OTHER_PARAMS, *COHORT_PARAMS, *(p + name for p in PREFIXES for name in COHORT_PARAMS)}
    for name in params:
        bare = name[2:] if name[:2] in PREFIXES else name
        if name not in allowed and not bare.startswith("tag."):
            raise QueryError(name, f"unknown parameter {name!r}")


def _own_or_shared(params: Mapping[str, str], prefix: str, name: str) -> tuple[str, str | None]:
    """The cohort's own parameter if given, else the shared one: (its name, its value)."""
    for param in (prefix + name, name):
        if param in params:
            return param, params[param]
    return name, None


def _cohort(params: Mapping[str, str], prefix: str, now: float) -> Cohort:
    scope = scope_from(params, (prefix, ""))
    except_param, except_agent = _own_or_shared(params, prefix, "except_agent")
    if except_agent:
        check_text(except_param, except_agent)
        if not scope.node or scope.agent:
            raise QueryError(
                except_param,
                f"{except_param} leaves one agent out of a node: give {prefix}node, not an agent",
            )
    return Cohort(scope, *_range(params, prefix, now), except_agent=except_agent or "")


def _range(params: Mapping[str, str], prefix: str, now: float) -> tuple[int, int]:
    """[start, end) in whole minutes."""
    window_param, text = _own_or_shared(params, prefix, "window")
    window = window_seconds(window_param, text or DEFAULT_WINDOW)
    from_param, first = _own_or_shared(params, prefix, "from")
    to_param, last = _own_or_shared(params, prefix, "to")
    if first is None and last is None:
        return query.window(window, now)
    start = _instant(from_param, first) if first is not None else _instant(to_param, last) - window
    end = _instant(to_param, last) if last is not None else start + window
    if end <= start:
        raise QueryError(to_param, f"{to_param} must be after {from_param}")
    if start > now:
        raise QueryError(from_param, f"{from_param} is in the future")
    if start < now - settings.ROLLUP_RETENTION_DAYS * DAY_S:
        raise QueryError(
            from_param, f"{from_param} is older than the {settings.ROLLUP_RETENTION_DAYS} days kept"
        )
    return math.floor(start / 60) * 60, math.ceil(end / 60) * 60


def _instant(param: str, text: str) -> float:
    try:
        return instant(text)
    except ValueError as exc:
        raise QueryError(param, f"{param}: {exc}") from None


def _options(params: Mapping[str, str], stats: tuple[str, ...]) -> Options:
    stat = params.get("stat", "all")
    if stat != "all" and stat not in stats:
        raise QueryError("stat", f"stat must be one of all, {', '.join(stats)} for this metric")
    return Options(
        stats=stats if stat == "all" else (stat,),
        stat=stat if stat != "all" else ("p95" if "p95" in stats else stats[0]),
        min_effect=_fraction(params, "min_effect", 0.02, 0.0, 1.0),
        confidence=_fraction(params, "confidence", 0.95, 0.5, 0.99),
        min_count=settings.COMPARE_MIN_COUNT,
    )


def _fraction(params: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    """A number such as 0.02, or a percentage such as 2%."""
    text = params.get(name)
    if text is None:
        return default
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:
        raise QueryError(name, f"{name} must be a number from {lo:g} to {hi:g} (or a percentage)")
    return value
