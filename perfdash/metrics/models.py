"""Dictionaries of the metric store.

The big tables (raw points, rollup deltas, minute and hour rollups) are partitioned
PostgreSQL tables created in SQL by migration 0002; they hold only these ids, which keeps
their rows narrow enough for fast COPY.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

# Defined by the ingest protocol, which the collectors share; the query module reads it here.
from collectors.protocol import WELL_KNOWN_METRICS as WELL_KNOWN_METRICS

# Set when made (the database's UTC day), then by the first batch of each day a worker process
# stores for it (store.prepare); garbage collection removes what has not reported for the
# rollup retention (gc.py).
LAST_SEEN_HELP = "The last UTC day a batch of its points was stored (at least)."


class Series(models.Model):
    """One stream of raw points: a metric of one agent with one set of tags."""

    metric = models.CharField(max_length=128)
    node = models.CharField(max_length=128)
    agent = models.CharField(max_length=128)
    tags_key = models.TextField(help_text="Canonical JSON of the tags (sorted keys).")
    tags = models.JSONField(default=dict)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateField(db_default=Now(), help_text=LAST_SEEN_HELP)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["metric", "node", "agent", "tags_key"], name="series_unique")
        ]

    def __str__(self) -> str:
        return f"{self.metric}{{node={self.node}, agent={self.agent}, {self.tags_key}}}"


class RollupKey(models.Model):
    """What one rollup row aggregates: a metric at fleet, node or agent scope, optionally
    narrowed to one dimension tag. An empty string means "all"."""

    metric = models.CharField(max_length=128)
    node = models.CharField(max_length=128, blank=True)
    agent = models.CharField(max_length=128, blank=True)
    tag_key = models.CharField(max_length=128, blank=True)
    tag_value = models.CharField(max_length=128, blank=True)
    # Numbered in commit order by the transaction that created it (keys.py, store._create).
    version = models.BigIntegerField(default=0, db_index=True)
    last_seen = models.DateField(db_default=Now(), help_text=LAST_SEEN_HELP)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "node", "agent", "tag_key", "tag_value"], name="rollupkey_unique"
            )
        ]
        indexes = [
            models.Index(fields=["metric", "agent"], name="rollupkey_agent"),
            # An agent's keys of every metric (keys.py reads them when its index lacks them).
            models.Index(fields=["agent"], name="rollupkey_of_agent"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.metric} node={self.node or '*'} agent={self.agent or '*'} {self.tag_key}={self.tag_value}"
        )
