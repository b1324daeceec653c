"""Service-level objectives: a metric, an objective and a rolling period (docs/slos.md)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from perfdash.metrics.dimensions import MAX_TAG_LENGTH


class SLO(models.Model):
    class Kind(models.TextChoices):
        LATENCY = "latency", "Latency: a share of the points at or below a threshold"
        RATIO = "ratio", "Ratio: bad (or good) events of one counter over the events of another"

    class Counts(models.TextChoices):
        BAD = "bad", "bad events (e.g. errors_total)"
        GOOD = "good", "good events"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.LATENCY)
    metric = models.CharField(
        max_length=128,
        help_text="Latency: the metric (agent_response_ms). Ratio: the counter of events counted.",
    )
    threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Latency: the most a good point may be, in the metric's unit (2000 for 2 s).",
    )
    counts = models.CharField(
        max_length=4, choices=Counts.choices, default=Counts.BAD, help_text="Ratio: what the counter counts."
    )
    total_metric = models.CharField(
        max_length=128,
        blank=True,
        help_text="Ratio: the metric whose events are the total: its points are counted (a *_total "
        "counter: its values summed), e.g. agent_response_ms for responses.",
    )
    objective = models.FloatField(help_text="The share of good events aimed at, e.g. 0.99 for 99 %.")
    period_days = models.PositiveIntegerField(default=30, help_text="The rolling period, in days.")
    node = models.CharField(max_length=128, blank=True, help_text="Only this node (optional).")
    agent = models.CharField(max_length=128, blank=True, help_text="Only this agent (optional).")
    tag_key = models.CharField(max_length=MAX_TAG_LENGTH, blank=True)
    tag_value = models.CharField(max_length=128, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "SLO"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        if not 0 < self.objective < 1:
            errors["objective"] = "Give a share between 0 and 1, e.g. 0.99."
        if self.kind == self.Kind.LATENCY and (self.threshold is None or self.threshold <= 0):
            errors["threshold"] = "A latency SLO needs the most a good point may be."
        if self.kind == self.Kind.RATIO and not self.total_metric:
            errors["total_metric"] = "A ratio SLO needs the metric whose events are the total."
        if not 1 <= self.period_days <= 90:
            errors["period_days"] = "From 1 to 90 days (rollups are kept 90 days)."
        if self.tag_key and not self.tag_value:
            errors["tag_value"] = "Give the tag's value."
        if errors:
            raise ValidationError(errors)
