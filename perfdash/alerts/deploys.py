"""Deploy rules: verifying due deploys (perfdash/compare/verify.py) and alerting on the ones
that made a metric slower.

Each deploy is verified in a transaction of its own that holds its row lock (taken with SKIP
LOCKED, so two workers never verify one deploy at once) and stores, with the verification,
the alert events of every deploy rule it concerns, marked for the outbox. A deploy is picked
only while unverified, so its alerts are recorded once: a later pass never sees it again, and
the unique constraint on (rule, deploy, metric) refuses a second record whatever happens. A
crash rolls all of it back, and the deploy is verified again on the next pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from perfdash.alerts import transports
from perfdash.alerts.models import AlertEvent, AlertRule, Silence
from perfdash.compare import verify, words
from perfdash.compare.compare import SLOWER, Difference
from perfdash.events.models import Event
from perfdash.lib.durations import HOUR_S

log = logging.getLogger(__name__)

# Deploys verified in one pass at most, newest first: a backlog (workers that were down for
# hours) is worked off over a few passes instead of holding the alerts queue.
PER_PASS = 10


def verify_due(now: float | None = None, notify: Callable[[list[int]], None] | None = None) -> int:
    """Verify the deploys due at `now`, each with its alerts in its own transaction; `notify`
    gets each notification's alert event ids once their transaction has committed. Returns
    how many deploys were verified."""
    now = time.time() if now is None else now
    failed: list[int] = []
    done = 0
    while done + len(failed) < PER_PASS:
        event = None
        try:
            with transaction.atomic():
                event = due(now).exclude(id__in=failed).select_for_update(skip_locked=True).first()
                if event is None:
                    break
                groups = _verified(event, now)
                if notify is not None:
                    for ids in groups:
                        transaction.on_commit(lambda ids=ids: notify(ids), robust=True)
        except Exception:
            if event is None:  # finding the deploys failed: nothing to go on with
                raise
            # Rolled back, so it stays due: tried again next pass, without holding up the others.
            log.exception("verifying deploy %s failed", event.id)
            failed.append(event.id)
            continue
        done += 1
    return done


def due(now: float) -> QuerySet[Event]:
    """The deploys to verify at `now`, newest first: tagged with a version, not verified yet,
    the range after them over, and the range before them still in the minute rollups (older
    ones stay unverified)."""
    rows = Event.objects.filter(
        kind="deploy",
        verified_at__isnull=True,
        tags__has_key=verify.TAG,
        ts__gte=_dt(verify.verifiable_since(now)),
        ts__lte=_dt(verify.due_until(now)),
    )
    return rows.exclude(**{f"tags__{verify.TAG}": ""}).order_by("-ts", "-id")


def previous_version(event: Event) -> str | None:
    """The version of the latest deploy before `event` with another version that covered as
    much: a fleet-wide one for a fleet-wide deploy; for a deploy on a node, a fleet-wide one
    or one on that node."""
    version, node = event.tags[verify.TAG], event.tags.get("node", "")
    rows = Event.objects.filter(Q(ts__lt=event.ts) | Q(ts=event.ts, id__lt=event.id), kind="deploy")
    rows = rows.filter(tags__has_key=verify.TAG).exclude(**{f"tags__{verify.TAG}__in": [version, ""]})
    fleet_wide = ~Q(tags__has_key="node")
    rows = rows.filter(fleet_wide | Q(tags__node=node) if node else fleet_wide)
    return rows.order_by("-ts", "-id").values_list(f"tags__{verify.TAG}", flat=True).first()


def _verified(event: Event, now: float) -> list[list[int]]:
    event.verification = verify.verify(event.ts.timestamp(), event.tags, now, previous_version(event))
    event.verified_at = datetime.fromtimestamp(now, UTC)
    event.save(update_fields=["verification", "verified_at"])
    return record(event, now)


def slower(rule: AlertRule, verification: dict) -> dict[str, dict]:
    """The verified metrics that make `rule` notify: slower, by at least its threshold."""
    return {
        metric: found
        for metric, found in verification["metrics"].items()
        if found["verdict"] == SLOWER
        and (not rule.metric or metric == rule.metric)
        and found["rel"] >= rule.threshold
    }


def concerns(rule: AlertRule, event: Event) -> bool:
    """A rule with a node hears of that node's deploys and of fleet-wide ones."""
    node = event.tags.get("node", "")
    return not rule.node or not node or node == rule.node


def record(event: Event, now: float) -> list[list[int]]:
    """The alert events of a verified deploy, one per enabled deploy rule and metric it made
    slower; returns those that notify, one list per rule."""
    at = datetime.fromtimestamp(now, UTC)
    silences = list(Silence.objects.filter(starts_at__lte=at, ends_at__gt=at))
    node = event.tags.get("node", "")
    groups = []
    for rule in AlertRule.objects.filter(enabled=True, kind=AlertRule.Kind.DEPLOY):
        found = slower(rule, event.verification) if concerns(rule, event) else {}
        if not found:
            continue
        silenced = any(s.matches(rule, "", at, node=node) for s in silences)
        rows = AlertEvent.objects.bulk_create(
            AlertEvent(
                rule=rule,
                deploy=event,
                subject=metric,
                from_state="inactive",
                to_state="firing",
                value=result["rel"],
                threshold=rule.threshold,
                at=at,
                silenced=silenced,
                notification_pending=not silenced,
            )
            for metric, result in found.items()
        )
        if not silenced:
            groups.append([row.id for row in rows])
    return groups


def change(result: dict, confidence: float) -> str:
    """A metric's change in words: "p95 +17 % (95 % interval +12 % to +22 %)"."""
    d = Difference(result["rel"], result["lo"], result["hi"], result["verdict"])
    return f"{result['stat']} {words.change(d, confidence)}"


def message(verification: dict, metrics: list[str]) -> str:
    """The notification's line: "deploy 1.3.0: agent_response_ms p95 +17 % (95 % interval +12 %
    to +22 %) against 1.2.0", each metric's change in turn (separated by "; ")."""
    v = verification
    changes = "; ".join(f"{m} {change(v['metrics'][m], v['confidence'])}" for m in metrics)
    where = f" on {v['node']}" if v["node"] else ""
    return f"deploy {v['version']}{where}: {changes} against {against(v)}"


def against(verification: dict) -> str:
    """The previous version, or the time before the deploy when there was none to compare with."""
    if verification["against"]:
        return verification["against"]
    minutes = (_ts(verification["a"]["to"]) - _ts(verification["a"]["from"])) // 60
    return f"the {minutes} min before it"


def notification(rule: AlertRule, events: list[AlertEvent]) -> transports.Notification:
    """One message for one deploy and rule, listing each metric it made slower, worst first."""
    deploy = events[0].deploy
    v = deploy.verification
    metrics = sorted((e.subject for e in events), key=lambda m: -v["metrics"][m]["rel"])
    return transports.Notification(
        rule_id=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        metric=f"deploy {v['version']}",
        statistic="change",
        comparison=AlertRule.Comparison.GTE,
        threshold=rule.threshold,
        state=events[0].to_state,
        offenders=[transports.Offender(e.subject, e.value) for e in events],
        runbook_url=rule.runbook_url,
        dashboard_url=compare_url(v, metrics[0]),
        at=events[0].at,
        scope="metric",
        unit="change",
        kind=AlertRule.Kind.DEPLOY,
        headline=message(v, metrics),
        details={m: change(v["metrics"][m], v["confidence"]) for m in metrics},
        deploy={
            "event_id": deploy.id,
            "version": v["version"],
            "against": v["against"],
            "how": v["how"],
            "node": v["node"],
        },
    )


def compare_url(verification: dict, metric: str) -> str:
    """The dashboard's compare page showing the verification's comparison of `metric`."""
    v = verification
    params = {"metric": metric}
    for name in ("a", "b"):
        if v[name]["version"]:
            params[f"{name}.tag.{verify.TAG}"] = v[name]["version"]
        params[f"{name}.from"], params[f"{name}.to"] = v[name]["from"], v[name]["to"]
    if v["node"]:
        params["node"] = v["node"]
    return f"{settings.SITE_URL.rstrip('/')}/compare/?{urlencode(params)}"


def preview(rule: AlertRule, now: float, hours: int = 24) -> list[tuple[datetime, str, float]]:
    """(verified at, "metric (deploy version)", change) of the last `hours`' verified deploys
    that would have made `rule` notify."""
    since = datetime.fromtimestamp(now - hours * HOUR_S, UTC)
    out = []
    for event in Event.objects.filter(kind="deploy", verified_at__gte=since).order_by("verified_at", "id"):
        if concerns(rule, event):
            for metric, found in slower(rule, event.verification).items():
                out.append(
                    (event.verified_at, f"{metric} (deploy {event.verification['version']})", found["rel"])
                )
    return out


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())
