"""Notification transports: email, Slack and generic webhooks, behind `send()`.

A transport returns when the message was handed over and raises TransportError otherwise;
`permanent` tells the caller (perfdash.alerts.delivery) whether to retry or to disable the
channel. Channel URLs and HMAC secrets never appear in an error or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from smtplib import SMTPAuthenticationError, SMTPRecipientsRefused, SMTPSenderRefused

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from perfdash.alerts.models import AlertRule, NotificationChannel
from perfdash.lib import units
from perfdash.lib.http import HttpResult, UnsafeUrlError, post_bytes, post_json

EMAIL_OFFENDERS = 50
SLACK_OFFENDERS = 10
STATE_LABELS = {"firing": "FIRING", "resolved": "RESOLVED", "repeat": "STILL FIRING"}
DEPLOY_LABEL = "SLOWER AFTER DEPLOY"
# Slack's answers for a webhook that is gone for good
# (https://api.slack.com/messaging/webhooks#handling_errors).
SLACK_DEAD_HOOK = {
    "invalid_token",
    "no_service",
    "channel_not_found",
    "channel_is_archived",
    "no_team",
    "team_disabled",
}
WEBHOOK_VERSION = 1


@dataclass
class Offender:
    subject: str
    value: float | None


@dataclass
class Notification:
    rule_id: int
    rule_name: str
    severity: str
    metric: str
    statistic: str
    comparison: str  # "gt", "gte", "lt" or "lte"
    threshold: float
    state: str  # "firing", "resolved" or "repeat"
    offenders: list[Offender]
    runbook_url: str
    dashboard_url: str
    at: datetime
    scope: str = ""  # the rule's scope ("fleet", "node", "agent"), or "metric": names what is counted
    unit: str = ""  # "days" for a forecast rule (the value is the time to the limit), "change" for a deploy's
    kind: str = AlertRule.Kind.THRESHOLD
    headline: str = ""  # the summary, when the rule's kind says it in its own words
    details: dict[str, str] = field(default_factory=dict)  # an offender's value in words
    deploy: dict | None = None  # deploy rules: {"event_id", "version", "against", "how", "node"}

    def format(self, value: float | None) -> str:
        """A value of this metric for people, as the dashboard shows it: 2410 -> "2.41 s" for a
        *_ms metric."""
        if self.unit == "days" and value is not None and math.isfinite(value):
            return f"{_number(value)} days"
        if self.unit == "days" and value == math.inf:
            return "not within the horizon"
        if value is None or not math.isfinite(value):
            return "no data"
        if self.unit == "change":
            return units.percent(value)
        if self.unit == "MADs":
            return f"{_number(value)} MADs"
        if self.unit == "burn":
            return f"{_number(value)}x the alerting rate"
        return units.readable(value, units.of_metric(self.metric, self.statistic))

    @property
    def threshold_text(self) -> str:
        return f"{AlertRule.Comparison(self.comparison).label} {self.format(self.threshold)}"

    @property
    def summary(self) -> str:
        """One line on the worst offender: "p95 of agent_response_ms is 2.41 s (threshold > 2 s)"."""
        if self.headline:
            return self.headline
        ranked = self.ranked()
        value = _finite(ranked[0].value) if ranked else None
        now = "has no data" if value is None else f"is {self.format(value)}"
        return f"{self.statistic} of {self.metric} {now} (threshold {self.threshold_text})"

    @property
    def state_label(self) -> str:
        if self.kind == AlertRule.Kind.DEPLOY:
            return DEPLOY_LABEL
        return STATE_LABELS.get(self.state, self.state.upper())

    @property
    def heading(self) -> str:
        """What the list of offenders shows: "p95 of agent_response_ms (threshold > 2 s)"."""
        if self.kind == AlertRule.Kind.DEPLOY:
            against = (
                self.deploy["against"] if self.deploy and self.deploy["against"] else "before the deploy"
            )
            least = f" (notifies from {self.format(self.threshold)})" if self.threshold else ""
            return f"change against {against}{least}"
        return f"{self.statistic} of {self.metric} (threshold {self.threshold_text})"

    @property
    def who(self) -> str:
        """What is affected: the offender's name if there is one, else a count like "3 agents"."""
        if len(self.offenders) == 1:
            return self.offenders[0].subject
        noun = self.scope if self.scope in ("agent", "node", "metric") else "subject"
        return f"{len(self.offenders)} {noun}s" if self.offenders else ""

    def ranked(self) -> list[Offender]:
        # Worst first: the highest values for a rule that fires above its threshold.
        sign = -1 if self.comparison in ("gt", "gte") else 1
        return sorted(
            self.offenders, key=lambda o: (_finite(o.value) is None, sign * (_finite(o.value) or 0))
        )

    def rows(self, limit: int) -> tuple[list[tuple[str, str]], int]:
        """The `limit` worst offenders as (subject, formatted value), and how many are left out."""
        ranked = self.ranked()
        shown = [(o.subject, self.details.get(o.subject) or self.format(o.value)) for o in ranked[:limit]]
        return shown, max(0, len(ranked) - limit)


class TransportError(Exception):
    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent  # True: it will never succeed, so the channel is disabled


class Transport:
    def __init__(self, channel: NotificationChannel) -> None:
        self.channel = channel

    def notify(self, notification: Notification) -> None:
        raise NotImplementedError


class Email(Transport):
    def notify(self, notification: Notification) -> None:
        message = email_message(notification, self.channel.recipient_list)
        # Django's SMTP backend waits forever by default; a stuck relay must not hold a worker.
        connection = get_connection(timeout=settings.EMAIL_TIMEOUT or settings.ALERTS_HTTP_TIMEOUT_S)
        try:
            sent = connection.send_messages([message])
        except SMTPRecipientsRefused as exc:  # this channel's addresses: fixing them is on its owner
            raise TransportError(f"email: {type(exc).__name__} {exc}", permanent=True) from None
        except (SMTPSenderRefused, SMTPAuthenticationError) as exc:
            # EMAIL_URL / DEFAULT_FROM_EMAIL are server-wide: retried and recorded, never a
            # reason to disable every email channel.
            raise TransportError(f"email: {type(exc).__name__} {exc}") from None
        except OSError as exc:  # smtplib's errors, refused connections and timeouts
            raise TransportError(f"email: {type(exc).__name__} {exc}") from None
        if not sent:
            raise TransportError("email: the channel has no recipients", permanent=True)


class Slack(Transport):
    def notify(self, notification: Notification) -> None:
        try:
            result = post_json(self.channel.url, slack_message(notification))
        except UnsafeUrlError as exc:
            raise TransportError(f"Slack: {exc}", permanent=True) from None
        if result.status is None:
            raise TransportError(f"Slack: {result.error}")
        if result.status == 200:
            return
        code = result.body.strip()
        permanent = result.status in (403, 404, 410) or code in SLACK_DEAD_HOOK
        # Slack answers errors with a bare code like "invalid_payload"; anything else might
        # echo the request, so it stays out of the message.
        detail = f" {code}" if re.fullmatch(r"[a-z_]{1,60}", code) else ""
        raise TransportError(f"Slack answered HTTP {result.status}{detail}", permanent=permanent)


class Webhook(Transport):
    def notify(self, notification: Notification) -> None:
        sent_at = int(time.time())
        body = json.dumps(webhook_payload(notification, sent_at), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Perfdash-Timestamp": str(sent_at)}
        if self.channel.hmac_secret:
            digest = hmac.new(self.channel.hmac_secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Perfdash-Signature"] = f"sha256={digest}"
        try:
            result = post_bytes(self.channel.url, body, headers)
        except UnsafeUrlError as exc:
            raise TransportError(f"webhook: {exc}", permanent=True) from None
        _raise_for_webhook(result)


TRANSPORTS: dict[str, type[Transport]] = {
    NotificationChannel.Kind.EMAIL: Email,
    NotificationChannel.Kind.SLACK: Slack,
    NotificationChannel.Kind.WEBHOOK: Webhook,
}


def send(channel: NotificationChannel, notification: Notification) -> None:
    """Deliver through the channel; raises TransportError when that failed."""
    transport = TRANSPORTS.get(channel.kind)
    if transport is None:
        raise TransportError(f"no transport for channels of kind {channel.kind!r}", permanent=True)
    transport(channel).notify(notification)


def email_message(notification: Notification, recipients: list[str]) -> EmailMultiAlternatives:
    rows, more = notification.rows(EMAIL_OFFENDERS)
    context = {
        "n": notification,
        "rows": rows,
        "more": more,
        "at": f"{_utc(notification.at):%Y-%m-%d %H:%M:%S} UTC",
    }
    # A header cannot hold a line break, whatever a rule or agent is called.
    subject = " ".join(render_to_string("alerts/email_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject, render_to_string("alerts/email_body.txt", context), settings.DEFAULT_FROM_EMAIL, recipients
    )
    message.attach_alternative(render_to_string("alerts/email_body.html", context), "text/html")
    return message


def slack_message(notification: Notification) -> dict:
    """A Block Kit message (https://api.slack.com/block-kit), with a plain-text fallback.

    Everything that carries a name (rule, agents, nodes, tags) goes as plain text: Slack's
    mrkdwn has no escape for `*`, `_`, `~` or backticks, and an agent may be called anything,
    `<!channel>` included. Only the links, which perfdash builds, are mrkdwn.
    """
    n = notification
    rows, more = n.rows(SLACK_OFFENDERS)
    lines = [f"• {subject}: {value}" for subject, value in rows]
    if more:
        lines.append(f"and {more} more")
    links = [f"<{_mrkdwn(n.dashboard_url)}|Open in perfdash>"]
    if n.runbook_url:
        links.append(f"<{_mrkdwn(n.runbook_url)}|Runbook>")
    blocks: list[dict] = [
        {"type": "header", "text": _plain(f"{n.state_label} · {n.severity}")},
        {"type": "section", "text": _plain(f"{n.rule_name}\n{n.summary}")},
    ]
    if lines:  # Slack rejects a section with empty text
        blocks.append({"type": "section", "text": _plain("\n".join(lines))})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    fallback = f"{n.state_label} {n.severity}: {n.rule_name}: {n.summary}"
    # The fallback (notifications, old clients) is not formatted either.
    return {"text": _mrkdwn(fallback), "mrkdwn": False, "blocks": blocks}


def _plain(text: str) -> dict:
    return {"type": "plain_text", "text": text, "emoji": False}


def webhook_payload(notification: Notification, sent_at: int) -> dict:
    """The JSON body of a generic webhook, version 1:

    version, rule_id, rule_name, state ("firing", "resolved", "repeat"), severity, metric,
    statistic, comparison ("gt", "gte", "lt", "lte"), threshold, summary (one line for
    people), offenders ([{"subject", "value"}], value null when there is no data),
    at (the state change, ISO 8601 UTC), sent_at (Unix seconds, equal to the
    X-Perfdash-Timestamp header; it is inside the signed body, so a receiver can reject
    replays), dashboard_url, runbook_url ("" if none), kind ("threshold", "forecast",
    "deploy"); and for a deploy rule deploy ({"event_id", "version", "against", "how",
    "node"}), its offenders being the metrics it made slower with their relative change.
    An offender of an outlier rule has a `detail`: its value against its peers' median and band.
    """
    n = notification
    extra = {"deploy": n.deploy} if n.deploy is not None else {}
    return {
        "version": WEBHOOK_VERSION,
        "rule_id": n.rule_id,
        "rule_name": n.rule_name,
        "state": n.state,
        "severity": n.severity,
        "metric": n.metric,
        "statistic": n.statistic,
        "comparison": n.comparison,
        "threshold": n.threshold,
        "summary": n.summary,
        "offenders": [_offender(n, o) for o in n.offenders],
        "at": _utc(n.at).isoformat().replace("+00:00", "Z"),
        "sent_at": sent_at,
        "dashboard_url": n.dashboard_url,
        "runbook_url": n.runbook_url,
        "kind": n.kind,
        **extra,
    }


def _offender(n: Notification, o: Offender) -> dict:
    """An offender's subject and value, and its value in words where the rule gives them."""
    detail = n.details.get(o.subject)
    return {"subject": o.subject, "value": _finite(o.value), **({"detail": detail} if detail else {})}


def _raise_for_webhook(result: HttpResult) -> None:
    if result.status is None:
        raise TransportError(f"webhook: {result.error}")
    if 200 <= result.status < 300:
        return
    # The answer's body is left out: a receiver may echo the request, secret path included.
    transient = result.status in (408, 429) or result.status >= 500
    hint = " (redirects are not followed)" if 300 <= result.status < 400 else ""
    raise TransportError(f"webhook answered HTTP {result.status}{hint}", permanent=not transient)


def _number(x: float) -> str:
    # For people: whole numbers from 100 up ("12,345"), three significant figures below
    # ("2.41", "0.0123"), never exponent notation.
    if x == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    decimals = 2 - math.floor(math.log10(abs(x)))
    return f"{x:.{decimals}f}".rstrip("0").rstrip(".")


def _finite(value: float | None) -> float | None:
    # Rule evaluation yields NaN for "no data"; JSON has no NaN.
    return value if value is not None and math.isfinite(value) else None


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _mrkdwn(text: str) -> str:
    # The three characters Slack asks to escape in any text it formats.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
