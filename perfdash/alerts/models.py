"""Alert rules, their per-subject state, the append-only history, channels and silences."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from perfdash.lib.secrets import origin_only
from perfdash.metrics.dimensions import MAX_TAG_LENGTH, dimension_tags
from perfdash.metrics.query import GROWTH, MAX_GROWTH_WINDOW_S, STATS
from perfdash.metrics.scope import Scope


def tag_key_choices() -> list[tuple[str, str]]:
    # A callable, so the choices follow the DIMENSION_TAGS setting without a migration each
    # time it changes.
    return [("", "—"), *((t, t) for t in dimension_tags())]


class NotificationChannel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack (incoming webhook)"
        WEBHOOK = "webhook", "Generic webhook (JSON POST)"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    recipients = models.TextField(
        blank=True, help_text="Email: one or more addresses, comma or newline separated."
    )
    url = models.TextField(
        blank=True, help_text="Slack or webhook URL. A secret: never logged, shown masked."
    )
    hmac_secret = models.CharField(
        max_length=200,
        blank=True,
        help_text="Webhook: if set, the body is signed (X-Perfdash-Signature: sha256=…).",
    )
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(
        blank=True, help_text="Set when a permanent delivery error disabled it."
    )
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def clean(self) -> None:
        if self.kind == self.Kind.EMAIL:
            if not self.recipient_list:
                raise ValidationError({"recipients": "Add at least one email address."})
            from django.core.validators import validate_email

            for address in self.recipient_list:
                try:
                    validate_email(address)
                except ValidationError:
                    raise ValidationError({"recipients": f"{address!r} is not an email address."}) from None
        elif not self.url.startswith(("https://", "http://")):
            raise ValidationError({"url": "Give the full http(s) URL of the webhook."})

    @property
    def recipient_list(self) -> list[str]:
        return [a.strip() for a in self.recipients.replace("\n", ",").split(",") if a.strip()]

    @property
    def masked_url(self) -> str:
        # The path of a Slack or webhook URL is its secret, as are a password and a query.
        return origin_only(self.url) if self.url else ""

    def disable(self, reason: str) -> None:
        NotificationChannel.objects.filter(pk=self.pk).update(enabled=False, disabled_reason=reason[:1000])


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "A metric crosses a threshold"
        FORECAST = "forecast", "A capacity target is projected to reach its limit within N days"
        DEPLOY = "deploy", "A deploy made a metric slower"
        OUTLIER = "outlier", "An agent is an outlier among its peers"
        BURN = "burn", "An SLO burns its error budget too fast"
        ANOMALY = "anomaly", "A metric is anomalous for this time of day"

    class Scope(models.TextChoices):
        FLEET = "fleet", "The whole fleet"
        NODE = "node", "Each node"
        AGENT = "agent", "Each agent"

    class Comparison(models.TextChoices):
        GT = "gt", ">"
        GTE = "gte", "≥"
        LT = "lt", "<"
        LTE = "lte", "≤"

    class NoData(models.TextChoices):
        KEEP = "keep", "Keep the current state"
        ALERT = "alert", "Fire"
        RESOLVE = "resolve", "Resolve"

    class Severity(models.TextChoices):
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.THRESHOLD)
    capacity_target = models.ForeignKey(
        "forecasting.CapacityTarget",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Forecast rules: the target whose projected crossing is watched; the threshold "
        "is then a number of days.",
    )
    slo = models.ForeignKey(
        "detect.SLO",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Burn-rate rules: the SLO watched. Critical pages on its 1 h/5 min and 6 h/30 min "
        "windows, warning opens a ticket on its 3 d/6 h windows.",
    )
    metric = models.CharField(max_length=128, blank=True)
    statistic = models.CharField(
        max_length=10,
        choices=[(s, s) for s in STATS if s != "sum"] + [(GROWTH, "growth (%/min)")],
        default="p95",
    )
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.FLEET)
    node = models.CharField(max_length=128, blank=True, help_text="Only this node (optional).")
    agent = models.CharField(max_length=128, blank=True, help_text="Only this agent (optional).")
    tag_key = models.CharField(max_length=MAX_TAG_LENGTH, blank=True, choices=tag_key_choices)
    tag_value = models.CharField(max_length=128, blank=True)
    comparison = models.CharField(max_length=3, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField()
    recovery_threshold = models.FloatField(
        null=True, blank=True, help_text="Resolves only past this value (hysteresis). Empty: the threshold."
    )
    window_seconds = models.PositiveIntegerField(default=300, help_text="Evaluated over the last N seconds.")
    for_seconds = models.PositiveIntegerField(default=0, help_text="Pending this long before firing.")
    min_samples = models.PositiveIntegerField(
        default=1, help_text="Below this count: neither fires nor resolves."
    )
    no_data = models.CharField(max_length=10, choices=NoData.choices, default=NoData.KEEP)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    repeat_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Remind while firing every N seconds. Empty: never."
    )
    send_resolved = models.BooleanField(default=True)
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    runbook_url = models.URLField(blank=True)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from perfdash.metrics.query import known_metric

        if self.kind == self.Kind.FORECAST:
            self._clean_forecast()
            return
        if self.kind == self.Kind.DEPLOY:
            self._clean_deploy()
            return
        if self.kind == self.Kind.BURN:
            self._clean_burn()
            return
        if self.kind == self.Kind.OUTLIER:
            self._clean_outlier()
        if self.kind == self.Kind.ANOMALY:
            self._clean_anomaly()
        errors = {}
        if self.statistic == GROWTH and self.kind != self.Kind.OUTLIER:
            errors["statistic"] = "Growth compares an agent with its peers: it is for outlier rules."
        if not self.metric:
            errors["metric"] = "Give the metric to watch."
        elif not known_metric(self.metric):
            errors["metric"] = f"No metric {self.metric!r} has been seen, and it is not a well-known one."
        if self.tag_key and not self.tag_value:
            errors["tag_value"] = "Give the tag's value."
        if self.scope == self.Scope.NODE and self.agent:
            errors["agent"] = (
                "A rule for each node watches whole nodes: leave the agent empty, or choose "
                "'Each agent' (with this node) to watch agents."
            )
        if self.recovery_threshold is not None and self.threshold is not None:
            firing_side = self.comparison in (self.Comparison.GT, self.Comparison.GTE)
            if (firing_side and self.recovery_threshold > self.threshold) or (
                not firing_side and self.recovery_threshold < self.threshold
            ):
                errors["recovery_threshold"] = (
                    "The recovery threshold must lie on the healthy side of the threshold."
                )
        if self.window_seconds < 60:
            errors["window_seconds"] = "The window must be at least 60 seconds (rollups are per minute)."
        if errors:
            raise ValidationError(errors)

    def _clean_forecast(self) -> None:
        """A forecast rule fires when the mean forecast reaches the target's limit within
        `threshold` days; the rest of its settings follow from that."""
        target = self.capacity_target
        if target is None:
            raise ValidationError({"capacity_target": "Choose the capacity target to watch."})
        if self.threshold is None or not 0 < self.threshold <= target.horizon_days:
            days = f"between 0 and the target's horizon ({target.horizon_days})"
            raise ValidationError({"threshold": f"Give a number of days {days}."})
        self.metric, self.statistic = target.kind, "max"
        self.scope = self.Scope.NODE if target.per_node else self.Scope.FLEET
        self.comparison, self.min_samples = self.Comparison.LTE, 1
        self.no_data = self.NoData.KEEP  # no forecast (too little data) changes nothing
        if self.recovery_threshold is not None and self.recovery_threshold < self.threshold:
            raise ValidationError({"recovery_threshold": "Resolving needs more days than firing."})

    def _clean_deploy(self) -> None:
        """A deploy rule notifies once per verified deploy that made a metric (this one, if
        given) slower by at least `threshold` (a fraction: 0.1 is 10 %); nothing else applies."""
        from django.conf import settings

        verified = settings.DEPLOY_VERIFY_METRICS
        if self.metric and self.metric not in verified:
            raise ValidationError(
                {"metric": f"Deploys are verified on {', '.join(verified)} (DEPLOY_VERIFY_METRICS) only."}
            )
        if self.threshold is None or self.threshold < 0:
            raise ValidationError({"threshold": "Give the smallest slowdown that notifies: 0 % or more."})
        self.capacity_target, self.statistic, self.scope = None, "p95", self.Scope.FLEET
        self.agent, self.tag_key, self.tag_value = "", "", ""
        self.comparison, self.recovery_threshold = self.Comparison.GTE, None
        self.for_seconds, self.min_samples, self.no_data = 0, 1, self.NoData.KEEP
        self.repeat_seconds, self.send_resolved = None, False  # once per deploy: nothing repeats or resolves

    def _clean_burn(self) -> None:
        """A burn-rate rule watches an SLO's burn rates: its severity picks the windows (critical:
        the paging pairs, warning: the ticket pair), and it fires while both windows of a pair
        burn at or above that pair's rate (the value is the burn over that rate, so 1 fires)."""
        if self.slo_id is None:
            raise ValidationError({"slo": "Choose the SLO to watch."})
        self.capacity_target, self.metric, self.statistic, self.scope = (
            None,
            self.slo.metric,
            "count",
            self.Scope.FLEET,
        )
        self.node, self.agent, self.tag_key, self.tag_value = "", "", "", ""
        self.comparison, self.threshold, self.recovery_threshold = self.Comparison.GTE, 1.0, None
        self.min_samples, self.no_data = 1, self.NoData.KEEP

    def _clean_anomaly(self) -> None:
        """An anomaly rule watches the statistic over the last hour of the fleet (or its node,
        agent or tag) against its seasonal baseline: its threshold is how many MADs away from
        the expected value, either side, fire."""
        if self.threshold is None or not 0 < self.threshold <= 20:
            raise ValidationError(
                {"threshold": "Give how many MADs from the expected value fire: above 0, at most 20."}
            )
        self.capacity_target, self.scope, self.comparison = None, self.Scope.FLEET, self.Comparison.GT
        self.window_seconds = 3600  # the baseline is hourly

    def _clean_outlier(self) -> None:
        """An outlier rule watches every agent: its scope says who its peers are (each node's
        agents, or the whole fleet's), its threshold how many spreads (scaled MADs) above the
        peers' median an agent may lie; min_samples is the fewest points an agent is judged on.
        Its statistic may also be the growth per minute (over at most MAX_GROWTH_WINDOW_S)."""
        if self.scope == self.Scope.AGENT:
            raise ValidationError({"scope": "Peers are each node's agents or the whole fleet's: choose one."})
        if self.threshold is None or not 0 < self.threshold <= 20:
            raise ValidationError(
                {"threshold": "Give how many MADs above the peers' median fire: above 0, at most 20."}
            )
        if self.statistic == GROWTH and self.window_seconds > MAX_GROWTH_WINDOW_S:
            limit = f"at most {MAX_GROWTH_WINDOW_S} seconds"
            raise ValidationError({"window_seconds": f"Growth is read from minute rollups: {limit}."})
        self.capacity_target, self.agent, self.tag_key, self.tag_value = None, "", "", ""
        self.comparison, self.no_data = self.Comparison.GT, self.NoData.KEEP

    # Changing any of these makes the rule watch something else: its old states go.
    SUBJECT_FIELDS = (
        "kind",
        "capacity_target_id",
        "slo_id",
        "metric",
        "statistic",
        "scope",
        "node",
        "agent",
        "tag_key",
        "tag_value",
    )

    def save(self, *args, **kwargs) -> None:
        if self.pk:
            before = AlertRule.objects.filter(pk=self.pk).values(*self.SUBJECT_FIELDS).first()
            if before and any(before[f] != getattr(self, f) for f in self.SUBJECT_FIELDS):
                self.states.all().delete()
        super().save(*args, **kwargs)

    def filters(self) -> Scope:
        """The part of the fleet the rule reads: its node, agent and tag. Raises QueryError for
        a tag that has left DIMENSION_TAGS since the rule was saved."""
        return Scope(node=self.node, agent=self.agent, tag_key=self.tag_key, tag_value=self.tag_value)

    @property
    def read_window_s(self) -> int:
        """The window the rule's statistic is read over: whole minutes, plus the minute still
        running, so a 60 s rule sees the last complete minute and the current one, never a
        nearly empty window just after a minute starts."""
        return max(60, self.window_seconds // 60 * 60) + 60

    @property
    def recovery(self) -> float:
        return self.threshold if self.recovery_threshold is None else self.recovery_threshold


class AlertState(models.Model):
    """Where one subject (the fleet, a node or an agent) of a rule stands now."""

    class State(models.TextChoices):
        INACTIVE = "inactive"
        PENDING = "pending"
        FIRING = "firing"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    subject = models.CharField(max_length=128, blank=True, help_text="Node or agent; empty for the fleet.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.INACTIVE)
    since = models.DateTimeField(default=timezone.now)
    value = models.FloatField(null=True)
    last_notified = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "subject"], name="state_unique")]


class AlertEvent(models.Model):
    """Append-only: every state change, with the value and threshold at that moment."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    subject = models.CharField(max_length=128, blank=True)
    from_state = models.CharField(max_length=10)
    to_state = models.CharField(max_length=10)  # pending, firing, resolved, inactive, or "repeat"
    value = models.FloatField(null=True)
    threshold = models.FloatField()
    at = models.DateTimeField(default=timezone.now)
    silenced = models.BooleanField(default=False)
    # The outbox: set in the transaction that records the change, cleared once every channel
    # is done with it; a sweeper re-queues what a crash or a broker outage left behind.
    notification_pending = models.BooleanField(default=False)
    # Deploy rules: the deploy that made `subject` (a metric) slower; `value` is by how much.
    deploy = models.ForeignKey(
        "events.Event", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_events"
    )

    class Meta:
        ordering = ["-at"]
        indexes = [
            models.Index(fields=["rule", "-at"], name="event_rule_at"),
            models.Index(fields=["at"], condition=models.Q(notification_pending=True), name="event_pending"),
        ]
        constraints = [
            # A deploy alerts a rule about a metric once, however often it were verified.
            models.UniqueConstraint(
                fields=["rule", "deploy", "subject"],
                condition=models.Q(deploy__isnull=False),
                name="deploy_alert_once",
            )
        ]


class Delivery(models.Model):
    """One attempt to deliver a notification through one channel."""

    class Status(models.TextChoices):
        SENT = "sent"
        RETRYING = "retrying"
        FAILED = "failed"

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    events = models.ManyToManyField(AlertEvent, related_name="deliveries")
    # Looked up before every send (has this notification gone out on this channel?).
    notification_key = models.CharField(
        max_length=64, db_index=True, help_text="Idempotency: one notification, one send."
    )
    status = models.CharField(max_length=10, choices=Status.choices)
    error = models.TextField(blank=True)
    duration_ms = models.FloatField(null=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "deliveries"


class Silence(models.Model):
    """Alerts that match change state but notify nobody between starts_at and ends_at."""

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE)
    node = models.CharField(max_length=128, blank=True)
    agent = models.CharField(max_length=128, blank=True)
    severity = models.CharField(max_length=10, blank=True, choices=[("", "any"), *AlertRule.Severity.choices])
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    comment = models.TextField(blank=True)

    def clean(self) -> None:
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "A silence must end after it starts."})

    def matches(self, rule: AlertRule, subject: str, at, node: str | None = None) -> bool:
        """Whether this silence covers the alert of `rule` for `subject` at time `at`; `node`
        is the node a deploy alert's deploy was on ("" for the fleet)."""
        if not self.starts_at <= at < self.ends_at:
            return False
        if self.rule_id and self.rule_id != rule.id:
            return False
        if self.severity and self.severity != rule.severity:
            return False
        if node is None:
            node = subject if rule.scope == AlertRule.Scope.NODE else rule.node
        agent = subject if rule.scope == AlertRule.Scope.AGENT else rule.agent
        return (not self.node or self.node == node) and (not self.agent or self.agent == agent)
