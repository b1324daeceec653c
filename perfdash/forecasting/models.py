"""Capacity targets (configured in the admin) and the latest forecast of each."""

from __future__ import annotations

import orjson
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class CapacityTarget(models.Model):
    """Something that runs out: where its limit is, how much one node adds, how much headroom
    to keep and how far ahead to look."""

    class Kind(models.TextChoices):
        NODE_AGENTS = "node_agents", "Active agents per node"
        NODE_MEMORY = "node_memory", "Agent memory per node"
        FLEET_MEMORY = "fleet_memory", "Total memory of agents"
        FLEET_POINTS = "fleet_points", "Points per second of the fleet"
        RESPONSE_P95 = "response_p95", "Agent response time p95"

    kind = models.CharField(max_length=20, choices=Kind.choices, unique=True)
    limit = models.FloatField(
        null=True,
        blank=True,
        help_text="Where the limit line is drawn (agents, bytes, points/s or ms). Empty: the default "
        "(per-node targets: the node capacity; total memory: node memory x nodes; points/s: one "
        "ingest worker; response p95: its 2 s target).",
    )
    node_capacity = models.FloatField(
        null=True,
        blank=True,
        help_text="What one node holds, for the recommended count (agents, bytes or points/s). "
        "Empty: NODE_CAPACITY_AGENTS, NODE_MEMORY_BYTES or INGEST_WORKER_POINTS_PER_S.",
    )
    headroom = models.FloatField(
        default=0.2,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.9)],
        help_text="Share of capacity kept free through the horizon (0.2 = 20 %).",
    )
    horizon_days = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
    history_days = models.PositiveSmallIntegerField(
        default=28,
        validators=[MinValueValidator(1), MaxValueValidator(60)],
        help_text="How much history to fit on (weekly seasonality needs 3 weeks).",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.get_kind_display()

    @classmethod
    def all_kinds(cls) -> list[CapacityTarget]:
        """The five targets, created with defaults where missing (one per kind, never deleted)."""
        found = {t.kind: t for t in cls.objects.all()}
        for kind in set(cls.Kind.values) - set(found):  # only on a new installation
            found[kind] = cls.objects.get_or_create(kind=kind)[0]
        return [found[kind] for kind in cls.Kind.values]

    @property
    def per_node(self) -> bool:
        """Forecast for each node (plus the fleet total, which sizes the fleet)."""
        return self.kind in (self.Kind.NODE_AGENTS, self.Kind.NODE_MEMORY)

    @property
    def unit(self) -> str:
        return {
            self.Kind.NODE_AGENTS: "agents",
            self.Kind.NODE_MEMORY: "bytes",
            self.Kind.FLEET_MEMORY: "bytes",
            self.Kind.FLEET_POINTS: "points/s",
            self.Kind.RESPONSE_P95: "ms",
        }[self.kind]

    @property
    def sized_in(self) -> str:
        """What the recommended count counts."""
        return "ingest workers" if self.kind == self.Kind.FLEET_POINTS else "nodes"

    def capacity_per_node(self) -> float:
        if self.node_capacity:
            return self.node_capacity
        return {
            self.Kind.NODE_AGENTS: settings.NODE_CAPACITY_AGENTS,
            self.Kind.NODE_MEMORY: settings.NODE_MEMORY_BYTES,
            self.Kind.FLEET_MEMORY: settings.NODE_MEMORY_BYTES,
            self.Kind.FLEET_POINTS: settings.INGEST_WORKER_POINTS_PER_S,
            self.Kind.RESPONSE_P95: settings.NODE_CAPACITY_AGENTS,
        }[self.kind]

    def limit_for(self, subject: str, nodes: int) -> float:
        """The limit of one node, or of the fleet (`subject` "") when it has `nodes` nodes."""
        if self.kind == self.Kind.RESPONSE_P95:
            return self.limit or settings.LATENCY_TARGETS["agent_response_ms"]["value"]
        if self.kind == self.Kind.FLEET_POINTS or subject:
            return self.limit or self.capacity_per_node()
        if self.kind == self.Kind.FLEET_MEMORY and self.limit:
            return self.limit
        # A fleet total: what its nodes hold together.
        per_node = self.limit if self.per_node and self.limit else self.capacity_per_node()
        return per_node * max(1, nodes)


class ArrayJSONField(models.JSONField):
    """JSON decoded by orjson: a forecast's arrays are thousands of numbers, and with
    `json.loads` decoding them would be most of the capacity page's work for a large fleet."""

    def from_db_value(self, value, expression, connection):
        return value if value is None else orjson.loads(value)


class CapacityForecast(models.Model):
    """The latest fit for one target and subject (a node, or "" for the fleet), refreshed in place."""

    target = models.ForeignKey(CapacityTarget, on_delete=models.CASCADE, related_name="forecasts")
    subject = models.CharField(max_length=128, blank=True)
    fitted_at = models.DateTimeField()
    ok = models.BooleanField()
    reason = models.TextField(blank=True, help_text="Why there is no forecast (e.g. not enough data).")
    model = models.CharField(max_length=80, blank=True)
    backtest_mase = models.FloatField(null=True)
    step_s = models.PositiveIntegerField()
    limit = models.FloatField()
    # {"t": [...], "y": [...]} and {"t", "mean", "lower80", "upper80", "lower95", "upper95"}
    history = ArrayJSONField(default=dict)
    bands = ArrayJSONField(default=dict)
    notes = models.JSONField(default=list)
    crossing_at = models.DateTimeField(null=True)
    crossing_earliest = models.DateTimeField(null=True)
    crossing_latest = models.DateTimeField(null=True)
    # On the row that sizes the fleet (subject ""): nodes now and nodes recommended.
    current_nodes = models.PositiveIntegerField(null=True)
    recommended_nodes = models.PositiveIntegerField(null=True)
    sizing = models.JSONField(default=dict, help_text="How the recommendation was made.")

    class Meta:
        ordering = ["target_id", "subject"]
        constraints = [models.UniqueConstraint(fields=["target", "subject"], name="forecast_unique")]

    def __str__(self) -> str:
        return f"{self.target} — {self.subject or 'fleet'}"
