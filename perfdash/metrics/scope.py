"""What a read asks about: a part of the fleet, and the errors a read can answer with.

Its own module so that the key index and the query module both use it without importing
each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings

from perfdash.lib.durations import DAY_S, parse_duration
from perfdash.metrics.dimensions import dimension_tags


class QueryError(ValueError):
    """A parameter that cannot be answered; `param` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


class UnknownMetric(LookupError):
    pass


# No stored name holds a control character (ingest refuses them), and PostgreSQL refuses a
# NUL in any text parameter: such a filter can only be a mistake, answered as one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def window_seconds(param: str, text: str) -> int:
    """A window parameter ("5m", "24h", "7d") in seconds: from a minute to the rollup retention."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise QueryError(param, str(exc)) from None
    days = settings.ROLLUP_RETENTION_DAYS
    if not 60 <= seconds <= days * DAY_S:
        raise QueryError(param, f"{param} must be between 1m and {days}d")
    return seconds


def check_text(param: str, value: str) -> None:
    if _CONTROL.search(value):
        raise QueryError(param, f"{param} must not contain control characters")


@dataclass(frozen=True)
class Scope:
    """Which part of the fleet: everything (the default), a node, an agent, and optionally
    one dimension tag (`DIMENSION_TAGS`: tool, model, version, ...)."""

    node: str = ""
    agent: str = ""
    tag_key: str = ""
    tag_value: str = ""

    def __post_init__(self) -> None:
        if self.tag_key and self.tag_key not in (tags := dimension_tags()):
            raise QueryError(f"tag.{self.tag_key}", f"only these tags can filter: {', '.join(tags)}")
        check_text("node", self.node)
        check_text("agent", self.agent)
        check_text(f"tag.{self.tag_key}", self.tag_value)


FLEET = Scope()


def scope_from(params: Mapping[str, str], prefixes: tuple[str, ...] = ("",)) -> Scope:
    """The scope a URL's parameters give: `node=`, `agent=` and at most one `tag.K=`, each
    from the first of `prefixes` that gives it (the compare API's `a.node` before `node`).
    Errors name the parameter as it was given."""
    given: dict[str, tuple[str, str]] = {}  # field -> (parameter, value)
    for field in ("node", "agent"):
        param = next((p + field for p in prefixes if p + field in params), None)
        if param is not None:
            given[field] = (param, params[param])
    tags: list[str] = []
    for prefix in prefixes:
        tags = [k for k in params if k.startswith(prefix + "tag.")]
        if tags:
            break
    if len(tags) > 1:
        raise QueryError(tags[1], "at most one tag.K filter")
    tag_key = tags[0].split("tag.", 1)[1] if tags else ""
    try:
        return Scope(
            given.get("node", ("", ""))[1],
            given.get("agent", ("", ""))[1],
            tag_key,
            params[tags[0]] if tags else "",
        )
    except QueryError as exc:  # named as Scope knows it: name it as it was given
        names = {field: param for field, (param, _) in given.items()} | {
            f"tag.{tag_key}": tags[0] if tags else ""
        }
        raise QueryError(names.get(exc.param, exc.param), str(exc)) from None
