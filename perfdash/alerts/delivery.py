"""The one place notifications leave perfdash: every attempt is recorded (status, error,
duration), transient failures are retried with backoff, a permanent one disables the channel.

Deliveries of the same events are serialised by a row lock on those events and keyed per
channel, so a redelivered or duplicated task never sends a message twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timedelta
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from perfdash.alerts import deploys, transports
from perfdash.alerts.models import AlertEvent, AlertRule, Delivery, NotificationChannel
from perfdash.detect import anomaly, outliers, slo
from perfdash.lib import units

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 6


def dashboard_url(rule: AlertRule, subjects: list[str]) -> str:
    base = settings.SITE_URL.rstrip("/")
    if rule.kind == AlertRule.Kind.FORECAST:
        node = f"?node={quote(subjects[0], safe='')}" if len(subjects) == 1 and subjects[0] else ""
        return f"{base}/capacity/{node}"
    if rule.kind == AlertRule.Kind.BURN:
        return f"{base}/slos/"
    window = "5m" if rule.window_seconds <= 300 else "1h"
    if len(subjects) == 1 and subjects[0]:
        outlier = rule.kind == AlertRule.Kind.OUTLIER  # its subjects are agents, whatever the scope
        kind = "nodes" if rule.scope == AlertRule.Scope.NODE and not outlier else "agents"
        return f"{base}/{kind}/{quote(subjects[0], safe='')}/?window={window}"
    return f"{base}/?window={window}"


def notification(rule: AlertRule, events: list[AlertEvent]) -> transports.Notification:
    if rule.kind == AlertRule.Kind.DEPLOY:
        return deploys.notification(rule, events)
    state = events[0].to_state
    offenders = [transports.Offender(e.subject or "fleet", e.value) for e in events]
    fields = dict(
        rule_id=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        metric=rule.metric,
        statistic=rule.statistic,
        comparison=rule.comparison,
        threshold=rule.recovery if state == "resolved" else rule.threshold,
        state=state,
        offenders=offenders,
        runbook_url=rule.runbook_url,
        dashboard_url=dashboard_url(rule, [e.subject for e in events]),
        at=events[0].at,
        scope=rule.scope,
        kind=rule.kind,
    )
    own = _OWN_WORDS.get(rule.kind)
    return transports.Notification(**(fields | (own(rule, events, offenders) if own else {})))


def _forecast_words(rule: AlertRule, events: list[AlertEvent], offenders: list) -> dict:
    # "projected time to limit of Active agents per node is 4.2 days".
    return {"metric": str(rule.capacity_target), "statistic": "projected time to limit", "unit": "days"}


def _anomaly_words(rule: AlertRule, events: list[AlertEvent], offenders: list) -> dict:
    """Why the value is anomalous: against its expected value and band for the time of day."""
    scope = rule.filters()
    why = anomaly.explain(
        rule.metric, rule.statistic, anomaly.judge(rule.metric, rule.statistic, scope, rule.threshold)
    )
    return {
        "statistic": f"distance of the {rule.statistic} from its expected value",
        "unit": "MADs",
        "scope": "fleet",
        "headline": f"{rule.metric}: {why}; since {events[0].at:%H:%M} UTC",
        "details": {o.subject: why for o in offenders},
    }


def _burn_words(rule: AlertRule, events: list[AlertEvent], offenders: list) -> dict:
    """The SLO, its burn rates and the budget left, as they are when it is sent."""
    status = slo.status(rule.slo)
    burn = ", ".join(f"{w} {r:.1f}x" for w, r in status["burn_rates"].items() if r is not None)
    left = status["budget_left"]
    budget = "no data" if left is None else f"{left * 100:.1f} % of the error budget left"
    headline = (
        f"SLO {rule.slo.name}: {budget}; burn rates {burn}"
        if events[0].to_state != "resolved"
        else f"SLO {rule.slo.name}: burning within its budget again; {budget}"
    )
    return {
        "metric": rule.slo.name,
        "statistic": "burn over the alerting rate",
        "unit": "burn",
        "scope": "fleet",
        "headline": headline,
        "details": {"fleet": f"{budget}; burn rates {burn}"},
    }


def _outlier_words(rule: AlertRule, events: list[AlertEvent], offenders: list) -> dict:
    """Each offender explained: its value against its peers' median and band, as they are now."""
    by_node = rule.scope == AlertRule.Scope.NODE
    judged = {
        j.agent: j
        for j in outliers.find(
            rule.metric,
            rule.statistic,
            rule.read_window_s,  # as the engine judged it
            "node" if by_node else "fleet",
            rule.threshold,
            settings.OUTLIER_MIN_PEERS,
            rule.min_samples,
            rule.node,
        )
    }
    kind = units.of_metric(rule.metric, rule.statistic)
    peers = "its node's agents" if by_node else "the fleet's agents"
    details = {}
    for o in offenders:
        j = judged.get(o.subject)
        if j is not None and j.peer_median is not None:
            lo, hi = (units.readable(x, kind) for x in j.peer_band)
            details[o.subject] = (
                f"{units.readable(j.value, kind)} against a median of {units.readable(j.peer_median, kind)} "
                f"among {peers} (band {lo} to {hi}): {j.mads:.1f} MADs above"
            )
    return {
        "statistic": f"distance of the {rule.statistic} from the peers' median",
        "unit": "MADs",
        "scope": "agent",  # its subjects are agents, whatever the peers
        "details": details,
    }


# What a rule kind says in its own words, over the fields every notification has.
_OWN_WORDS = {
    AlertRule.Kind.FORECAST: _forecast_words,
    AlertRule.Kind.ANOMALY: _anomaly_words,
    AlertRule.Kind.BURN: _burn_words,
    AlertRule.Kind.OUTLIER: _outlier_words,
}


def deliver(event_ids: list[int], attempt: int = 1) -> float | None:
    """Send the notification for these events (one rule, one kind of change) to each enabled
    channel of the rule. Returns seconds until a retry is due, or None when done.

    Each channel is one short transaction: lock the events, skip if already sent, send,
    record. A crash after one channel's send loses neither its record nor the others' turn."""
    key = hashlib.sha256(",".join(map(str, sorted(event_ids))).encode()).hexdigest()[:40]
    first = AlertEvent.objects.filter(id__in=event_ids).select_related("rule").order_by("id").first()
    if first is None:
        return None
    retry = False
    for channel in first.rule.channels.filter(enabled=True):
        with transaction.atomic():
            events = list(AlertEvent.objects.select_for_update().filter(id__in=event_ids).order_by("id"))
            channel_key = f"{key}:{channel.id}"
            if Delivery.objects.filter(notification_key=channel_key, status=Delivery.Status.SENT).exists():
                continue
            retry |= _attempt(channel, notification(first.rule, events), events, channel_key, attempt)
    if retry:  # `_attempt` asks for no retry once the last attempt is spent
        return backoff(attempt)
    AlertEvent.objects.filter(id__in=event_ids).update(notification_pending=False)
    return None


def backoff(attempt: int) -> float:
    return min(300.0, 5.0 * 2 ** (attempt - 1))


# A notification still pending this long after its change was recorded is stuck (a worker died,
# the broker was away): every retry it could have had is over by then.
STUCK_AFTER_S = sum(backoff(a) for a in range(1, MAX_ATTEMPTS)) + 60


def pending(older_than_s: float = STUCK_AFTER_S, now: datetime | None = None) -> list[list[int]]:
    """The outbox: notifications recorded but never finished, as the event groups they were
    queued as (one evaluation pass, one rule, one kind of change; one deploy), so that a
    re-sent group has the same idempotency key as the original and no channel hears of it
    twice."""
    cutoff = (now or timezone.now()) - timedelta(seconds=older_than_s)
    stuck = AlertEvent.objects.filter(notification_pending=True, at__lt=cutoff).order_by("id")
    groups: dict[tuple, list[int]] = {}
    for event_id, *key in stuck.values_list("id", "rule_id", "to_state", "at", "deploy_id"):
        groups.setdefault(tuple(key), []).append(event_id)
    return list(groups.values())


def _attempt(channel: NotificationChannel, message, events: list[AlertEvent], key: str, attempt: int) -> bool:
    """One send, recorded. True if it should be retried."""
    started = time.perf_counter()
    status, error, retry = Delivery.Status.SENT, "", False
    try:
        transports.send(channel, message)
    except Exception as exc:  # anything unexpected is retried, never lets the other channels down
        permanent = isinstance(exc, transports.TransportError) and exc.permanent
        error = str(exc) if isinstance(exc, transports.TransportError) else f"unexpected {type(exc).__name__}"
        if permanent:
            status = Delivery.Status.FAILED
            channel.disable(f"{timezone.now():%Y-%m-%d %H:%M} UTC: {error}")
            log.warning("channel %s disabled: %s", channel.id, error)
        elif attempt >= MAX_ATTEMPTS:
            status = Delivery.Status.FAILED
        else:
            status, retry = Delivery.Status.RETRYING, True
    delivery = Delivery.objects.create(
        channel=channel,
        notification_key=key,
        status=status,
        error=error,
        duration_ms=(time.perf_counter() - started) * 1000,
        attempt=attempt,
    )
    delivery.events.set(events)
    return retry


def send_test(channel: NotificationChannel) -> str | None:
    """Send a sample notification through a channel now; returns the error, if any."""
    sample = transports.Notification(
        rule_id=0,
        rule_name="Test notification from perfdash",
        severity="warning",
        metric="agent_response_ms",
        statistic="p95",
        comparison="gt",
        threshold=2000.0,
        state="firing",
        offenders=[transports.Offender("agent-example", 2412.0)],
        runbook_url="",
        dashboard_url=settings.SITE_URL,
        at=timezone.now(),
    )
    try:
        transports.send(channel, sample)
    except transports.TransportError as exc:
        return str(exc)
    return None
