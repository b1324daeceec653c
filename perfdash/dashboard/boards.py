"""Boards as data: their JSON form (export and import, each panel's query checked), and a
board's page data, one explorer computation per panel (explore.build).

A panel's query is an explorer URL query. The board's window, when one is chosen, replaces
every panel's window, and the step is then the explorer's default for it (a panel's own step
may not divide another window).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlencode

import redis
from django.http import QueryDict
from django.utils.text import slugify

from perfdash.dashboard import explore, panels
from perfdash.lib import redis as redis_keys
from perfdash.lib.durations import HOUR_S
from perfdash.metrics import keys
from perfdash.metrics.scope import QueryError

PAGE = "board"
FORMAT = 1
CHARTS = {"line": "lines", "area": "stacked areas", "bar": "bars"}
BOARD_KEYS = {"name", "slug", "description", "empty_hint", "position", "panels"}
PANEL_KEYS = {"title", "query", "chart", "units", "target"}
MAX_POSITION = 2**31 - 1  # the column's (PositiveIntegerField)


class BoardError(ValueError):
    """A board file or panel that cannot be loaded; the text names the board and panel."""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    query: str
    chart: str = "line"
    units: str = ""
    target: float | None = None


@dataclass(frozen=True)
class BoardSpec:
    name: str
    slug: str
    description: str = ""
    empty_hint: str = ""
    position: int = 0
    panels: tuple[PanelSpec, ...] = field(default_factory=tuple)


def panel_fields(panel: PanelSpec) -> dict:
    return asdict(panel)


def check_query(text: str, window: str = "") -> explore.Explore:
    """The explorer's view of a panel's query (with the board's window, if one is chosen)."""
    params = QueryDict(text.lstrip("?"), mutable=True)
    if "page" in params:
        raise BoardError("page: not a panel parameter")
    if window:
        params["window"] = window
        params.pop("step", None)
    try:
        return explore.Explore.from_params(params)
    except QueryError as exc:
        raise BoardError(f"{exc.param}: {exc}") from None


def check_window(window: str) -> str:
    """A board's window, as the explorer takes it ("" is each panel's own)."""
    if window:
        try:
            explore.Explore.from_params(QueryDict(urlencode({"window": window})))
        except QueryError as exc:
            raise BoardError(str(exc)) from None
    return window


def export(specs: list[BoardSpec]) -> dict:
    return {"format": FORMAT, "boards": [asdict(s) for s in specs]}


def parse(data: object) -> list[BoardSpec]:
    """A board file's boards, each panel's query checked. BoardError names what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("boards"), list):
        raise BoardError('a board file is a JSON object with a list "boards"')
    if data.get("format", FORMAT) != FORMAT:
        raise BoardError(f"format {data.get('format')!r}: this perfdash reads format {FORMAT}")
    specs = [_board(i, b) for i, b in enumerate(data["boards"], 1)]
    slugs = [s.slug for s in specs]
    if len(set(slugs)) != len(slugs):
        raise BoardError(f"board slugs repeat: {sorted({s for s in slugs if slugs.count(s) > 1})}")
    return specs


def _text(where: str, item: dict, key: str, default: str | None = None, most: int = 200) -> str:
    value = item.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        what = "a non-empty text" if default is None else "a text"
        raise BoardError(f"{where}: {key} must be {what}")
    if len(value) > most:
        raise BoardError(f"{where}: {key} has more than {most} characters")
    return value.strip()


def _unknown(where: str, item: dict, allowed: set[str]) -> None:
    extra = sorted(set(item) - allowed)
    if extra:
        raise BoardError(f"{where}: unknown field {extra[0]!r}")


def _board(i: int, item: object) -> BoardSpec:
    if not isinstance(item, dict):
        raise BoardError(f"board {i}: not a JSON object")
    _unknown(f"board {i}", item, BOARD_KEYS)
    name = _text(f"board {i}", item, "name", most=100)
    where = f"board {name!r}"
    slug = _text(where, item, "slug", slugify(name), most=100)
    if not slug or slug != slugify(slug):
        raise BoardError(f"{where}: slug {slug!r} must be lowercase letters, digits, - and _")
    position = item.get("position", 0)
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= MAX_POSITION:
        raise BoardError(f"{where}: position must be a whole number from 0 to {MAX_POSITION}")
    panels = item.get("panels", [])
    if not isinstance(panels, list):
        raise BoardError(f"{where}: panels must be a list")
    return BoardSpec(
        name=name,
        slug=slug,
        description=_text(where, item, "description", "", most=2000),
        empty_hint=_text(where, item, "empty_hint", "", most=2000),
        position=position,
        panels=tuple(_panel(where, n, p) for n, p in enumerate(panels, 1)),
    )


def _panel(board: str, n: int, item: object) -> PanelSpec:
    if not isinstance(item, dict):
        raise BoardError(f"{board}, panel {n}: not a JSON object")
    title = item.get("title")
    where = f"{board}, panel {n} ({title!r})" if isinstance(title, str) else f"{board}, panel {n}"
    _unknown(where, item, PANEL_KEYS)
    title = _text(where, item, "title")
    query = _text(where, item, "query", most=1000)
    try:
        check_query(query)
    except BoardError as exc:
        raise BoardError(f"{where}: query {query!r}: {exc}") from None
    chart = _text(where, item, "chart", "line")
    if chart not in CHARTS:
        raise BoardError(f"{where}: chart must be one of {', '.join(CHARTS)}")
    target = item.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)):
        raise BoardError(f"{where}: target must be a number or null")
    units = _text(where, item, "units", "", most=40)
    return PanelSpec(title, query, chart, units, None if target is None else float(target))


@dataclass(frozen=True)
class BoardView:
    """What a board's live socket shows: the board (by slug) and the window chosen."""

    slug: str
    window: str = ""
    page: str = PAGE

    def key(self) -> tuple:
        return (self.page, self.slug, self.window)


def build(spec: BoardSpec, window: str = "", now: float | None = None) -> dict:
    """The board's data: each panel's explorer chart, or the error its query has now (a
    dimension tag removed from settings, say) without spoiling the other panels, and the events
    of the first panel that has any. Panels of long steps are reused for a while (`reuse_s`)
    unless `now` is given."""
    reuse = now is None
    now = time.time() if now is None else now
    out = {
        "board": {k: getattr(spec, k) for k in ("name", "slug", "description", "empty_hint")},
        "as_of": now,  # the server's time, against which a page tells each panel's age
        "window": window,
        "panels": [],
        "events": [],
    }
    views = []
    with keys.pinned():  # one look for new rollup keys for the whole board
        for panel in spec.panels:
            shown = {**asdict(panel), "explore": ""}
            try:
                view = check_query(panel.query, window)
            except BoardError as exc:
                out["panels"].append({**shown, "error": str(exc)})
                continue
            seconds = reuse_s(view) if reuse else 0.0
            data = (
                _recent.get(view.key(), lambda v=view: _shared(v, now), seconds, at=lambda d: d["as_of"])
                if seconds
                else _chart(view, now)
            )
            views.append(view)
            shown["explore"] = f"/explore/?{urlencode(view.query(), doseq=True)}"
            out["panels"].append({**shown, "data": data})
    # Panels of the same filters and window mark the same events: one read for each such kind.
    first: dict[tuple, explore.Explore] = {}
    for view in views:
        first.setdefault((view.node, view.agent, view.seconds), view)
    for view in first.values():
        out["events"] = explore.events(view, now)
        if out["events"]:
            break
    return out


# A panel of steps of an hour or more is reused for a 360th of its step (10 s for 1-hour steps,
# 30 s for the 3-hour steps of 7 days, at most a minute), by every viewer's first paint and
# live updates: such a panel reads every hour of its window, breakdowns over every agent, and
# within that time new points move only its last step, by a fraction of what it holds. Panels
# of shorter steps are the live ones: computed each time.
REUSE_FROM_STEP_S = HOUR_S
REUSE_SHARE = 360
REUSE_AT_MOST_S = 60.0


def reuse_s(view: explore.Explore) -> float:
    step = view.step_seconds
    return 0.0 if step < REUSE_FROM_STEP_S else min(step / REUSE_SHARE, REUSE_AT_MOST_S)


def _chart(view: explore.Explore, now: float) -> dict:
    """The panel's explorer chart, and when it was computed (`as_of`, Unix seconds)."""
    return {**explore.chart(view, now), "as_of": now}


# Saved boards' panels of 3-hour steps or longer (7 days and more) at the boards' own windows
# are computed by a worker (`precompute`, every PRECOMPUTE_EVERY_S) and kept in Redis for every
# web process: computing such a panel ranks every agent over a week of hour rows, so the first
# viewer would wait for all of them; with the worker's copy it waits for none. The panel says
# how old it is (`as_of`), never more than its reuse time. Shorter steps are not worth a pass
# every 15 s: a viewer computes them, and its copy is shared too.
PRECOMPUTE_FROM_STEP_S = 3 * HOUR_S
PRECOMPUTE_EVERY_S = 15.0  # beat's "precompute-boards" (perfdash/beat.py)
# A pass computes panels, the oldest copies first, until this much time is spent; what is left
# is next pass's (or a viewer's). It bounds the worker's cost whatever the number of boards.
PRECOMPUTE_BUDGET_S = 5.0


def _shared_key(view: explore.Explore) -> str:
    return redis_keys.key("board-panel", hashlib.sha1(repr(view.key()).encode()).hexdigest())


# After Redis fails, this process computes its panels itself for a while rather than ask again
# for each one: a Redis that hangs would cost every long panel its socket timeout.
REDIS_BACKOFF_S = 30.0
_redis_away_until = 0.0


def _redis_away() -> bool:
    return time.monotonic() < _redis_away_until


def _redis_failed() -> None:
    global _redis_away_until
    _redis_away_until = time.monotonic() + REDIS_BACKOFF_S


def _shared(view: explore.Explore, now: float) -> dict:
    """The worker's (or another process's) copy of the panel while it is recent enough, else
    the panel computed now and shared."""
    if _redis_away():
        return _chart(view, now)
    try:
        kept = redis_keys.client().get(_shared_key(view))
    except redis.RedisError:
        _redis_failed()
        return _chart(view, now)
    if kept is not None and (data := json.loads(kept))["as_of"] > time.time() - reuse_s(view):
        return data
    data = _chart(view, now)
    _share(view, data)
    return data


def _share(view: explore.Explore, data: dict) -> None:
    """Then the next viewer computes it (slower, never wrong) if Redis is away."""
    if _redis_away():
        return
    try:
        redis_keys.client().set(_shared_key(view), json.dumps(data), ex=int(REUSE_AT_MOST_S * 2))
    except redis.RedisError:
        _redis_failed()


def precompute(specs: list[BoardSpec], budget_s: float = PRECOMPUTE_BUDGET_S) -> int:
    """Compute the boards' long panels (at their own windows) whose shared copies would be too
    old before the next pass, the oldest first, until `budget_s` is spent (one at least);
    returns how many were computed."""
    views = {}
    for spec in specs:
        for panel in spec.panels:
            try:
                view = check_query(panel.query)
            except BoardError:
                continue
            if view.step_seconds >= PRECOMPUTE_FROM_STEP_S:
                views.setdefault(view.key(), view)
    if not views:
        return 0
    global _redis_away_until
    kept = redis_keys.client().mget([_shared_key(v) for v in views.values()])
    _redis_away_until = 0.0  # Redis answers: share again at once, not after the back-off
    started, due = time.time(), []
    for view, value in zip(views.values(), kept, strict=True):
        as_of = json.loads(value)["as_of"] if value is not None else 0.0
        if as_of <= started + PRECOMPUTE_EVERY_S - reuse_s(view):
            due.append((as_of, view))
    done = 0
    with keys.pinned():
        for _, view in sorted(due, key=lambda d: d[0]):
            if _redis_away() or (done and time.time() - started >= budget_s):
                break  # a copy that cannot be shared is not worth computing here
            _share(view, _chart(view, time.time()))
            done += 1
    return done


_recent = panels.Reused(seconds=0.0)  # each panel its own reuse_s, its age its as_of


def forget(shared: bool = True) -> None:
    """Drop the reused panels of this process, and with `shared` every process's and the
    worker's (tests; the benchmark's cold first paint)."""
    global _redis_away_until
    _recent.clear()
    _redis_away_until = 0.0
    if shared:
        client = redis_keys.client()
        for key in client.scan_iter(redis_keys.key("board-panel", "*")):
            client.delete(key)
