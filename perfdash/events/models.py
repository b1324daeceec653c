"""Events that collectors post (deploys, config changes, incidents, notes): the dashboard draws
them as markers on its time charts, and the read API lists them. A deploy tagged with a
version carries its verification (perfdash/compare/verify.py) once it has been checked."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import models
from django.db.models import Q

from collectors import event as protocol

# What one read returns at most, newest first.
MAX_ROWS = 500
COLUMNS = ("id", "ts", "kind", "title", "tags", "verification")


class Event(models.Model):
    ts = models.DateTimeField(help_text="When it happened, as the sender said.")
    kind = models.CharField(max_length=16, choices=[(k, k) for k in protocol.KINDS])
    title = models.CharField(max_length=protocol.TITLE_MAX)
    tags = models.JSONField(default=dict, blank=True)
    token = models.ForeignKey(
        "api.ApiToken", on_delete=models.PROTECT, related_name="+", help_text="The token that sent it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    verification = models.JSONField(
        null=True, blank=True, help_text="Deploys: the new version compared with the one before it."
    )
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-ts"]
        indexes = [
            models.Index(fields=["ts"], name="event_ts"),
            # What the verifier looks for every minute: deploys not verified yet.
            models.Index(
                fields=["ts"],
                condition=Q(kind="deploy", verified_at__isnull=True),
                name="event_unverified_deploy",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"

    @classmethod
    def record(cls, token_id: int, event: protocol.Event) -> Event:
        return cls.objects.create(
            token_id=token_id,
            ts=datetime.fromtimestamp(event.ts, UTC),
            kind=event.kind,
            title=event.title,
            tags=event.tags,
        )

    @classmethod
    def between(
        cls,
        start: float,
        end: float,
        *,
        kind: str = "",
        node: str = "",
        agent: str = "",
        limit: int = MAX_ROWS,
    ) -> list[dict]:
        """{"id", "ts" (a datetime), "kind", "title", "tags", "verification"} of the events from
        `start` to `end` (Unix seconds), newest first, at most `limit`. "verification" is None
        but for a deploy that has been verified.

        `node` and `agent` choose a page's events: an event tagged node=X belongs to node X,
        one tagged agent=Y to agent Y, and one tagged with neither to everything. So a node's
        page shows its own events and the untagged ones; an agent's page those tagged with
        that agent (or no agent), and with no node unless it is the `node` given too."""
        rows = cls.objects.filter(ts__gte=_dt(start), ts__lte=_dt(end))
        if kind:
            rows = rows.filter(kind=kind)
        if node or agent:
            rows = rows.filter(~Q(tags__has_key="node") | Q(tags__node=node))
        if agent:
            rows = rows.filter(~Q(tags__has_key="agent") | Q(tags__agent=agent))
        return list(rows.order_by("-ts", "-id").values(*COLUMNS)[:limit])


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
