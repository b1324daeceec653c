"""Receiving one OTLP export: decode, translate, the ingest path's limits, then in one
transaction the cumulative streams' deltas and the batch kept in the ingest outbox, and a
worker woken (docs/otlp.md). The same task, COPY and rollups as ingest API v1 then store it."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from collectors.protocol import Limits
from perfdash.ingest import cardinality, ratelimit
from perfdash.ingest.models import PendingBatch
from perfdash.ingest.tasks import wake
from perfdash.lib.unavailable import RETRY_AFTER_S
from perfdash.metrics.batch import Batch
from perfdash.metrics.dimensions import dimension_tags
from perfdash.otlp import assemble, models, wire
from perfdash.otlp.translate import EXPLICIT, Identity, Points, Report, Translator

log = logging.getLogger(__name__)


@dataclass
class Refused(Exception):
    """An export refused whole: the HTTP status, why, and when to retry."""

    status: int
    message: str
    retry_after: int | None = None


def identity() -> Identity:
    return Identity(
        node=tuple(settings.OTLP_NODE_ATTRIBUTES),
        agent=tuple(settings.OTLP_AGENT_ATTRIBUTES),
        resource_tags=dict(settings.OTLP_RESOURCE_TAGS),
    )


def batch_id(body: bytes, kind: str) -> str:
    """The same export sent again (an exporter's retry) has the same id: stored once."""
    return "otlp-" + hashlib.sha256(kind.encode() + b"\0" + body).hexdigest()[:48]


def receive(token_id: int, body: bytes, kind: str, limits: Limits, now: float) -> tuple[Report, Batch | None]:
    """Store an export's data points (all but those the report names as rejected). Raises
    wire.WireError for a body that cannot be read and Refused for an export over a limit."""
    request = wire.decode(body, kind)
    translator = Translator(token_id, identity(), limits, dimension_tags(), now)
    try:
        points = translator.request(request)
    except RecursionError:
        raise wire.WireError("attribute values nested too deeply") from None
    if not len(points):
        return translator.report, None
    bid = batch_id(body, kind)
    _check_limits(token_id, bid, points, now)
    with transaction.atomic():
        batch = assemble.batch(bid, points, models.added(points, now))
        pending = PendingBatch.keep(token_id, batch) if len(batch) else None
    coarse = {
        out.series[0]
        for outputs in _outputs_of(points, EXPLICIT)
        for out in outputs
        if out.keep == "histogram"
    }
    if coarse:
        models.note_coarse(coarse, datetime.fromtimestamp(now, UTC).date())
    if pending is not None:
        try:
            wake(pending, bid)
        except Exception as exc:  # the broker is away: the sweeper queues the batch once it is back
            log.warning("ingest queue unavailable, OTLP batch kept for the sweeper: %s", type(exc).__name__)
    return translator.report, batch


def _outputs_of(points: Points, kind: int | None):
    """The outputs of the data points (of this kind), each list once: the data points of a
    stream share theirs."""
    seen = {}
    for k, outputs in zip(points.kind, points.outputs, strict=True):
        if kind is None or k == kind:
            seen[id(outputs)] = outputs
    return seen.values()


def _check_limits(token_id: int, bid: str, points: Points, now: float) -> None:
    try:
        allowed = ratelimit.allow(token_id, len(points))
    except Exception as exc:  # Redis counts the rate: the exporter keeps what it sent and retries
        log.warning("rate limit unavailable: %s", type(exc).__name__)
        raise Refused(503, "ingest rate limit unavailable; retry later", RETRY_AFTER_S) from None
    if not allowed:
        raise Refused(429, f"over the rate limit of {settings.INGEST_RATE_LIMIT} points/s", 1)
    series = list(dict.fromkeys(out.series for outputs in _outputs_of(points, None) for out in outputs))
    refusal = cardinality.check(token_id, Batch(bid, series, *([None] * 3)), now)
    if refusal is not None:
        raise Refused(refusal.status, refusal.body["error"], refusal.retry_after)
