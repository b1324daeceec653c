"""Board files, written and read in one place for the export_boards and import_boards commands
and the admin's export action and import page (docs/boards.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from perfdash.dashboard import boards
from perfdash.dashboard.models import Board

# Far above any board file people write (a 12-panel board is about 3 kB), and small enough
# that an upload by mistake is refused before it is parsed.
MAX_BYTES = 1024 * 1024


def dumps(found: Iterable[Board]) -> str:
    return json.dumps(boards.export([b.spec() for b in found]), indent=2) + "\n"


def load(text: str | bytes) -> list[Board]:
    """Creates or updates the file's boards by slug (Board.load), all or none, after every
    panel's query is checked. BoardError says what is wrong, naming the board and panel."""
    if len(text) > MAX_BYTES:
        raise boards.BoardError(f"a board file has at most {MAX_BYTES // 1024} KiB")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise boards.BoardError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise boards.BoardError(f"not JSON: {exc}") from None
    specs = boards.parse(data)
    _names_free(specs)
    return Board.load(specs)


def _no_constant(name: str) -> None:
    raise boards.BoardError(f"{name} is not a number a board can hold")


def _names_free(specs: list[boards.BoardSpec]) -> None:
    """Names are unique as slugs are: a board of the file may not take the name another board
    has now (even one the file renames: rename in two steps)."""
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise boards.BoardError(f"board names repeat: {repeated}")
    for spec in specs:
        other = Board.objects.filter(name=spec.name).exclude(slug=spec.slug).values_list("slug", flat=True)
        if other:
            raise boards.BoardError(f"board {spec.name!r}: the board {other[0]!r} has that name already")
