"""Telling live dashboards that new points were committed (called by the ingest worker)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)
GROUP = "metrics"


def points_committed(points: int, metrics: list[str]) -> None:
    """A compact delta: how many points and of which metrics. Never raises: the points are
    committed either way, and dashboards catch up on the next update."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            GROUP, {"type": "metrics.changed", "points": points, "metrics": metrics}
        )
    except Exception as exc:
        log.warning("could not notify live dashboards: %s", type(exc).__name__)
