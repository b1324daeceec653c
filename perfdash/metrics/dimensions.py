"""Which tags get rollups of their own (the dimension tags), from the `DIMENSION_TAGS` setting,
and the system check that keeps that setting safe.

Every dimension tag a point carries adds three rollup keys (fleet, node and agent scope) and
up to three rollup rows per minute, so the list is short by design: a reader can filter by
any of them (`tag.version=1.3.0`), and every other tag is only stored with the raw points.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from collectors.protocol import ProtocolError, check_name
from perfdash.metrics.models import RollupKey

MAX_DIMENSION_TAGS = 8
# The column a dimension tag's name is stored in (the alert rule's takes the same width).
MAX_TAG_LENGTH = RollupKey._meta.get_field("tag_key").max_length
# Names a read already uses for its breakdowns (`by=node`): a tag of that name would be ambiguous.
RESERVED = ("node", "agent")


def dimension_tags() -> tuple[str, ...]:
    return tuple(settings.DIMENSION_TAGS)


def problems(tags: tuple[str, ...]) -> list[str]:
    """What is wrong with a list of dimension tags, one sentence each."""
    found = []
    if len(tags) > MAX_DIMENSION_TAGS:
        found.append(
            f"it lists {len(tags)} tags, more than {MAX_DIMENSION_TAGS}: each adds 3 rollup keys "
            "and rows per minute for every point that carries it"
        )
    for tag in tags:
        try:
            check_name(tag, "tag", MAX_TAG_LENGTH)
        except ProtocolError as exc:
            found.append(exc.message)
        if tag in RESERVED:
            found.append(f"{tag!r} is a breakdown of its own (by={tag}), not a tag")
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates:
        found.append(f"it lists {', '.join(map(repr, duplicates))} more than once")
    return found


@register("ingest")
def dimension_tags_are_valid(app_configs=None, **kwargs) -> list:
    return [
        Error(
            f"DIMENSION_TAGS: {problem}.",
            hint=f"Set DIMENSION_TAGS to at most {MAX_DIMENSION_TAGS} distinct tag names of letters, "
            "digits, '_' and '.', e.g. tool,model,provider,op,version,variant.",
            id="metrics.E001",
        )
        for problem in problems(dimension_tags())
    ]
