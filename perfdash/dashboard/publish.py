"""Telling live dashboards that new points were committed (called by the ingest worker)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)
GROUP = "metrics"


def points_committed(points: int, metrics: list[str]) -> None:
    """A compact delta: how many points and of which metrics."""
    _send({"type": "metrics.changed", "points": points, "metrics": metrics})


def alerts_changed(events: int) -> None:
    """Alerts fired or resolved: pages showing firing alerts refresh."""
    _send({"type": "alerts.changed", "events": events})


def _send(message: dict) -> None:
    # Never raises: the change is committed either way, and dashboards catch up on the next.
    try:
        async_to_sync(get_channel_layer().group_send)(GROUP, message)
    except Exception as exc:
        log.warning("could not notify live dashboards: %s", type(exc).__name__)
