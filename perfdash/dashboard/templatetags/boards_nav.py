"""The navigation bar's boards: a menu of the first few boards by position, and the list."""

from __future__ import annotations

from django import template
from django.db import DatabaseError

from perfdash.dashboard.models import Board

register = template.Library()
# More than this make a long menu: the rest are one click away on /boards/.
SHOWN = 10


@register.inclusion_tag("dashboard/board_nav.html")
def boards_nav() -> dict:
    try:
        return {"boards": list(Board.objects.values("name", "slug")[:SHOWN])}
    except DatabaseError:  # the 503 page, shown while the database is away, has this bar too
        return {"boards": []}
