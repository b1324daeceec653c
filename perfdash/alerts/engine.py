"""Evaluating rules against the rollups and recording what changed.

Each rule is evaluated inside one transaction that holds its row lock (taken with SKIP
LOCKED), so two beat schedulers or several workers never evaluate the same rule at once;
state changes and history rows commit together, and notifications are queued only after
the commit, one per rule and kind of change.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

from django.db import transaction

from perfdash.alerts.decide import Current, Observation, Spec, decide
from perfdash.alerts.models import AlertEvent, AlertRule, AlertState, Silence
from perfdash.metrics import query
from perfdash.metrics.query import Scope, UnknownMetric


def spec_of(rule: AlertRule) -> Spec:
    return Spec(
        rule.comparison,
        rule.threshold,
        rule.recovery,
        rule.for_seconds,
        rule.min_samples,
        rule.no_data,
        rule.repeat_seconds,
        rule.send_resolved,
    )


def observe(rule: AlertRule, now: float) -> dict[str, Observation]:
    """The rule's statistic per subject ("" for the fleet, else each node or agent)."""
    scope = Scope(node=rule.node, agent=rule.agent, tag_key=rule.tag_key, tag_value=rule.tag_value)
    window = max(60, rule.window_seconds // 60 * 60)
    try:
        if rule.scope == AlertRule.Scope.FLEET:
            s = query.stats(rule.metric, window, scope, now=now)
            return {"": Observation(s[rule.statistic], s["count"])}
        by = "node" if rule.scope == AlertRule.Scope.NODE else "agent"
        narrower = Scope(node=rule.node, tag_key=rule.tag_key, tag_value=rule.tag_value)
        rows = query.breakdown(
            rule.metric, window, by, narrower, now=now, percentiles=rule.statistic.startswith("p")
        )
    except UnknownMetric:
        return {}
    if rule.agent and by == "agent":
        rows = {a: v for a, v in rows.items() if a == rule.agent}
    return {name: Observation(_stat(v, rule.statistic, window), v["count"]) for name, v in rows.items()}


def _stat(values: dict, statistic: str, window: int) -> float | None:
    if statistic == "rate":
        return values["count"] / window
    return values.get(statistic)


def evaluate(rule_id: int, now: float | None = None) -> list[int]:
    """Evaluate one rule; returns the ids of the events that should be notified (empty if
    another evaluator holds the rule right now)."""
    now = time.time() if now is None else now
    at = datetime.fromtimestamp(now, UTC)
    to_notify: list[int] = []
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update(skip_locked=True).filter(pk=rule_id, enabled=True).first()
        if rule is None:
            return []
        spec = spec_of(rule)
        seen = observe(rule, now)
        states = {s.subject: s for s in rule.states.all()}
        silences = list(Silence.objects.filter(starts_at__lte=at, ends_at__gt=at))
        for subject in sorted(set(seen) | set(states)):
            state = states.get(subject) or AlertState(rule=rule, subject=subject, since=at)
            before = state.state
            observation = seen.get(subject, Observation(None, 0))
            decision = decide(spec, Current(before, state.since, state.last_notified), observation, at)
            if decision.event is None and decision.state == before:
                continue
            silenced = any(s.matches(rule, subject, at) for s in silences)
            if decision.state != before:
                state.state, state.since = decision.state, at
            state.value = observation.value
            if decision.notify and not silenced:
                state.last_notified = at
            state.save()
            if decision.event:
                threshold = rule.recovery if decision.event == "resolved" else rule.threshold
                event = AlertEvent.objects.create(
                    rule=rule,
                    subject=subject,
                    from_state=before,
                    to_state=decision.event,
                    value=observation.value,
                    threshold=threshold,
                    at=at,
                    silenced=silenced,
                )
                if decision.notify and not silenced:
                    to_notify.append(event.id)
    return to_notify


def group(event_ids: list[int]) -> list[list[int]]:
    """One notification per rule and kind of change: many offenders, one message."""
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for event in AlertEvent.objects.filter(id__in=event_ids).order_by("id"):
        groups[(event.rule_id, event.to_state)].append(event.id)
    return list(groups.values())
