"""Evaluating rules against the rollups and recording what changed.

All enabled rules are evaluated in one transaction that holds their row locks (taken with
SKIP LOCKED), so two beat schedulers or several workers never evaluate a rule twice at once;
state changes and history rows commit together, and notifications are queued only after the
commit, one per rule and kind of change. Rules that watch the same metric over the same
window and scope share one read of the rollups, and only subjects that breach or already
have a state go through the state machine, which keeps 1000 rules x 1000 agents fast.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from perfdash.alerts import deploys
from perfdash.alerts.decide import COMPARE, Current, Observation, Spec, decide
from perfdash.alerts.models import AlertEvent, AlertRule, AlertState, Silence
from perfdash.detect import anomaly, outliers, slo
from perfdash.forecasting.models import CapacityForecast
from perfdash.lib.durations import DAY_S
from perfdash.metrics import query
from perfdash.metrics.scope import QueryError, Scope, UnknownMetric


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


@dataclass
class Observed:
    """One statistic per subject, as parallel arrays (subjects sorted)."""

    subjects: list[str]
    values: np.ndarray  # NaN where the statistic is undefined
    counts: np.ndarray

    def __post_init__(self) -> None:
        self.index = {s: i for i, s in enumerate(self.subjects)}

    def get(self, subject: str) -> Observation:
        i = self.index.get(subject)
        if i is None:
            return Observation(None, 0)
        value = float(self.values[i])
        return Observation(None if np.isnan(value) else value, int(self.counts[i]))


def observe(rule: AlertRule, now: float, cache: dict | None = None) -> Observed:
    """The rule's statistic per subject ("" for the fleet, else each node or agent). Rules
    reading the same rollups share `cache`: one read, and one set of arrays per statistic."""
    cache = {} if cache is None else cache
    if rule.kind == AlertRule.Kind.FORECAST:
        return _projected(rule, now)
    if rule.kind == AlertRule.Kind.OUTLIER:
        return _outlying(rule, now, cache)
    if rule.kind == AlertRule.Kind.BURN:
        return _burning(rule, now, cache)
    if rule.kind == AlertRule.Kind.ANOMALY:
        return _anomalous(rule, now)
    by = {"fleet": "", "node": "node", "agent": "agent"}[rule.scope]
    window = rule.read_window_s
    # Percentiles per node or agent merge every subject's sketches; count, min, max, avg and
    # rate are sums PostgreSQL makes (far less work for a thousand agents).
    percentiles = rule.statistic in query.PERCENTILES
    key = (rule.metric, window, by, rule.node, rule.agent, rule.tag_key, rule.tag_value, percentiles)
    if key not in cache:
        cache[key] = _read(rule, by, now, percentiles)
    if (key, rule.statistic) not in cache:
        rows = cache[key]
        subjects = sorted(rows)
        cache[(key, rule.statistic)] = Observed(
            subjects,
            np.array([_stat(rows[s], rule.statistic) for s in subjects], float),
            np.array([rows[s]["count"] for s in subjects], np.int64),
        )
    return cache[(key, rule.statistic)]


def _projected(rule: AlertRule, now: float) -> Observed:
    """Days until each subject's mean forecast reaches the limit (infinite: not within the
    horizon); a subject without a forecast counts as no data."""
    rows = CapacityForecast.objects.filter(target_id=rule.capacity_target_id)
    rows = rows.exclude(subject="") if rule.scope == AlertRule.Scope.NODE else rows.filter(subject="")
    found = sorted(rows.values_list("subject", "ok", "crossing_at"))
    return Observed(
        [subject for subject, _, _ in found],
        np.array([_days(ok, at, now) for _, ok, at in found], float),
        np.array([int(ok) for _, ok, _ in found], np.int64),
    )


def _outlying(rule: AlertRule, now: float, cache: dict) -> Observed:
    """How many spreads above its peers' median each agent lies (no data: too few peers).
    Rules on the same metric, statistic, window and node share one read of every agent."""
    key = ("outlier", rule.metric, rule.statistic, rule.read_window_s, rule.node)
    try:
        if key not in cache:
            cache[key] = outliers.peer_values(rule.metric, rule.statistic, rule.read_window_s, rule.node, now)
        judged = outliers.judge(
            cache[key],
            rule.threshold,
            settings.OUTLIER_MIN_PEERS,
            rule.min_samples,
            by_node=rule.scope == AlertRule.Scope.NODE,
            stat=rule.statistic,
        )
    except (UnknownMetric, QueryError):
        judged = []
    judged.sort(key=lambda j: j.agent)
    return Observed(
        [j.agent for j in judged],
        np.array([np.nan if j.mads is None else j.mads for j in judged], float),
        np.array([j.count for j in judged], np.int64),
    )


# A burn-rate rule's severity picks the SLO's window pairs: critical pages, warning tickets.
BURN_PAIRS = {"critical": "page", "warning": "ticket"}


def _burning(rule: AlertRule, now: float, cache: dict) -> Observed:
    """The SLO's burn over the rate that alerts, for the fleet ("" subject); an SLO's paging
    and ticket rules share one read."""
    if ("slo", rule.slo_id) not in cache:
        cache[("slo", rule.slo_id)] = slo.status(rule.slo, now)
    status = cache[("slo", rule.slo_id)]
    value = slo.burn_over(status["burn_rates"], rule.slo.period_days, BURN_PAIRS[rule.severity])
    total = int(status["total"])
    return Observed([""], np.array([np.nan if value is None else value]), np.array([total], np.int64))


def _anomalous(rule: AlertRule, now: float) -> Observed:
    """How many MADs from its seasonal baseline the statistic over the last hour lies, either
    side (no data: no baseline yet)."""
    try:
        scope = rule.filters()
        judged = anomaly.judge(rule.metric, rule.statistic, scope, rule.threshold, now)
    except (UnknownMetric, QueryError):
        return Observed([""], np.array([np.nan]), np.array([0], np.int64))
    value = np.nan if judged.mads is None else abs(judged.mads)
    return Observed([""], np.array([value]), np.array([judged.days], np.int64))


def _days(ok: bool, at: datetime | None, now: float) -> float:
    if not ok:
        return np.nan
    return np.inf if at is None else (at.timestamp() - now) / DAY_S


def _read(rule: AlertRule, by: str, now: float, percentiles: bool) -> dict[str, dict]:
    try:
        # A rule's tag may have left DIMENSION_TAGS since it was saved: it reads as no data
        # (the rule's no-data behaviour applies) instead of stopping every rule's evaluation.
        scope = rule.filters()
        if not by:
            return {"": query.stats(rule.metric, rule.read_window_s, scope, now=now)}
        narrower = Scope(node=rule.node, tag_key=rule.tag_key, tag_value=rule.tag_value)
        rows = query.breakdown(
            rule.metric, rule.read_window_s, by, narrower, now=now, percentiles=percentiles
        )
    except (UnknownMetric, QueryError):
        return {}
    return {a: v for a, v in rows.items() if not (by == "agent" and rule.agent and a != rule.agent)}


def _stat(values: dict, statistic: str) -> float:
    value = values.get(statistic)
    return np.nan if value is None else value


def candidates(rule: AlertRule, seen: Observed, active: dict, now: datetime) -> list[str]:
    """Subjects whose state could change: breaching ones, pending ones, firing ones that may
    have recovered, are due a reminder or were never announced, and the fleet. A firing subject
    still past its recovery threshold is skipped without running the state machine."""
    compare = COMPARE[rule.comparison]
    enough = seen.counts >= rule.min_samples
    with np.errstate(invalid="ignore"):
        breaching = compare(seen.values, rule.threshold) & enough
        holding = compare(seen.values, rule.recovery) & enough
    subjects = {seen.subjects[i] for i in np.nonzero(breaching)[0]}
    for subject, state in active.items():
        if state.state != AlertState.State.FIRING:
            subjects.add(subject)
            continue
        i = seen.index.get(subject)
        still = i is not None and holding[i]
        due = state.last_notified is None or (  # never announced: it fired during a silence
            rule.repeat_seconds and (now - state.last_notified).total_seconds() >= rule.repeat_seconds
        )
        if not still or due:
            subjects.add(subject)
    if rule.scope == AlertRule.Scope.FLEET and rule.kind != AlertRule.Kind.OUTLIER:
        subjects.add("")
    return sorted(subjects)


def evaluate(rule_id: int | None = None, now: float | None = None) -> list[int]:
    """Evaluate one rule (or every enabled rule); returns the ids of the events to notify.
    Rules another evaluator holds right now are skipped."""
    now = time.time() if now is None else now
    at = datetime.fromtimestamp(now, UTC)
    with transaction.atomic():
        # Deploy rules are not evaluated: each verified deploy alerts them once (deploys.py).
        rules = AlertRule.objects.select_for_update(skip_locked=True).filter(enabled=True)
        rules = rules.exclude(kind=AlertRule.Kind.DEPLOY)
        rules = list(rules.filter(pk=rule_id) if rule_id is not None else rules)
        if not rules:
            return []
        states: dict[int, dict[str, _State]] = defaultdict(dict)
        fields = ("rule_id", "subject", "state", "since", "value", "last_notified", "id")
        for row in AlertState.objects.filter(rule__in=rules).values_list(*fields):
            states[row[0]][row[1]] = _State(*row)
        changes = _Changes(at, list(Silence.objects.filter(starts_at__lte=at, ends_at__gt=at)))
        cache: dict = {}
        for rule in rules:
            seen = observe(rule, now, cache)
            active = {k: v for k, v in states[rule.id].items() if v.state != AlertState.State.INACTIVE}
            for subject in candidates(rule, seen, active, at):
                changes.step(rule, subject, states[rule.id].get(subject), seen.get(subject))
        return changes.save()


@dataclass
class _State:
    """A subject's state as the pass sees it: loaded from its row (`id`) or new (`id` None)."""

    rule_id: int
    subject: str
    state: str
    since: datetime
    value: float | None = None
    last_notified: datetime | None = None
    id: int | None = None


class _Changes:
    """State changes and events of one evaluation pass, written at the end with one statement
    each over arrays (a storm of thousands of firing subjects is four statements, not several
    per subject)."""

    def __init__(self, at: datetime, silences: list[Silence]):
        self.at, self.silences = at, silences
        self.states: list[_State] = []
        self.events: list[tuple] = []  # (rule_id, subject, from, to, value, threshold, silenced, notify)

    def step(self, rule: AlertRule, subject: str, state: _State | None, seen: Observation) -> None:
        state = state or _State(rule.id, subject, AlertState.State.INACTIVE, self.at)
        before = state.state
        decision = decide(spec_of(rule), Current(before, state.since, state.last_notified), seen, self.at)
        if decision.event is None and decision.state == before:
            return
        silenced = any(s.matches(rule, subject, self.at) for s in self.silences)
        if silenced and decision.event == "repeat":
            return  # a silenced reminder is no change at all; it is due again after the silence
        if decision.state != before:
            state.state, state.since = decision.state, self.at
        state.value = seen.value
        if decision.notify and not silenced:
            state.last_notified = self.at
        self.states.append(state)
        if decision.event is not None:
            threshold = rule.recovery if decision.event == "resolved" else rule.threshold
            self.events.append(
                (
                    rule.id,
                    subject,
                    before,
                    decision.event,
                    seen.value,
                    threshold,
                    silenced,
                    decision.notify and not silenced,
                )
            )

    def save(self) -> list[int]:
        """Write everything; returns the ids of the events that notify."""
        with connection.cursor() as cur:
            self._insert_states(cur, [s for s in self.states if s.id is None])
            self._update_states(cur, [s for s in self.states if s.id is not None])
            self._insert_events(cur, [e for e in self.events if not e[7]])
            return self._insert_events(cur, [e for e in self.events if e[7]])

    @staticmethod
    def _insert_states(cur, states: list[_State]) -> None:
        if states:
            cur.execute(
                "INSERT INTO alerts_alertstate (rule_id, subject, state, since, value, last_notified) "
                "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[], "
                "%s::float8[], %s::timestamptz[])",
                [
                    [getattr(s, f) for s in states]
                    for f in ("rule_id", "subject", "state", "since", "value", "last_notified")
                ],
            )

    @staticmethod
    def _update_states(cur, states: list[_State]) -> None:
        if states:
            cur.execute(
                "UPDATE alerts_alertstate a SET state = x.state, since = x.since, value = x.value, "
                "last_notified = x.last_notified FROM unnest(%s::bigint[], %s::text[], "
                "%s::timestamptz[], %s::float8[], %s::timestamptz[]) "
                "AS x(id, state, since, value, last_notified) WHERE a.id = x.id",
                [[getattr(s, f) for s in states] for f in ("id", "state", "since", "value", "last_notified")],
            )

    def _insert_events(self, cur, events: list[tuple]) -> list[int]:
        if not events:
            return []
        columns = [list(c) for c in zip(*events, strict=True)][:7]
        cur.execute(
            "INSERT INTO alerts_alertevent "
            "(rule_id, subject, from_state, to_state, value, threshold, silenced, at, notification_pending) "
            "SELECT *, %s, %s FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], "
            "%s::float8[], %s::float8[], %s::boolean[]) RETURNING id",
            [self.at, bool(events[0][7]), *columns],
        )
        return [row[0] for row in cur.fetchall()]


def group(event_ids: list[int]) -> list[list[int]]:
    """One notification per rule and kind of change (and deploy): many offenders, one message."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for event in AlertEvent.objects.filter(id__in=event_ids).order_by("id"):
        groups[(event.rule_id, event.to_state, event.deploy_id)].append(event.id)
    return list(groups.values())


@dataclass
class Change:
    at: datetime
    subject: str
    event: str
    value: float | None


def preview(rule: AlertRule, now: float | None = None, hours: int = 24, step_s: int = 300) -> list[Change]:
    """How `rule` (saved or not) would have behaved over the last `hours` of real data,
    evaluated every `step_s`: the state changes it would have made. Writes nothing."""
    now = time.time() if now is None else now
    if rule.kind == AlertRule.Kind.DEPLOY:  # a deploy rule sees only deploys verified already
        return [Change(at, subject, "firing", rel) for at, subject, rel in deploys.preview(rule, now, hours)]
    spec = spec_of(rule)
    current: dict[str, Current] = {}
    changes: list[Change] = []
    # Only the latest forecast is stored: a forecast rule is previewed as it stands now.
    times = [now] if rule.kind == AlertRule.Kind.FORECAST else np.arange(now - hours * 3600, now + 1, step_s)
    for t in times:
        at = datetime.fromtimestamp(float(t), UTC)
        seen = observe(rule, float(t))
        for subject in sorted(set(seen.subjects) | set(current) | ({""} if rule.scope == "fleet" else set())):
            state = current.get(subject, Current("inactive", at))
            observation = seen.get(subject)
            decision = decide(spec, state, observation, at)
            if decision.state != state.state or decision.notify:
                since = at if decision.state != state.state else state.since
                current[subject] = Current(
                    decision.state, since, at if decision.notify else state.last_notified
                )
            if decision.event:
                changes.append(Change(at, subject, decision.event, observation.value))
    return changes
