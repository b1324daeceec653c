"""What a read asks about: a part of the fleet, and the errors a read can answer with.

Its own module so that the key index and the query module both use it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfdash.metrics.models import DIMENSION_TAGS


class QueryError(ValueError):
    """A parameter that cannot be answered; `param` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


class UnknownMetric(LookupError):
    pass


@dataclass(frozen=True)
class Scope:
    """Which part of the fleet: everything (the default), a node, an agent, and optionally
    one dimension tag (tool, model, provider or op)."""

    node: str = ""
    agent: str = ""
    tag_key: str = ""
    tag_value: str = ""

    def __post_init__(self) -> None:
        if self.tag_key and self.tag_key not in DIMENSION_TAGS:
            raise QueryError(
                f"tag.{self.tag_key}", f"only these tags can filter: {', '.join(DIMENSION_TAGS)}"
            )


FLEET = Scope()
