"""How big the store's dictionaries grow: series per metric, and which values of each
dimension tag get rollups of their own (docs/operations.md, "Cardinality limits").

Both are kept where series are created (`store._create`), in its transaction, after it has
locked the key counter's row: creations take turns, so the counts never race.

**Series per metric.** `MetricSeries` holds a row per metric with its number of series; the
ingest API reads it to refuse a batch that would give a metric too many series or bring too
many metric names (`perfdash/ingest/cardinality.py`).

**Dimension tag values.** Every value of a dimension tag (tool, model, provider, op) adds
three rollup keys per metric, which every reading process holds in memory (keys.py) and which
breakdowns walk. Only the first `DIMENSION_MAX_VALUES` values of a tag first seen on a UTC
day get rollups of their own; later ones are *folded*: their points count in the rollups of
the value `OTHER`, while their raw series keep the real value. Each value is decided once,
the first time a series carries it, and the decision is kept (`DimensionValue`): a series'
rollups never move between its own value and `OTHER`, and a restarted worker resolves it as
before. Values seen on earlier days do not count towards today's, so a fleet's steady set
of tools never folds; only a burst of new values does.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection, models

from perfdash.metrics.batch import SeriesKey

OTHER = "_other"
# (metric, node, agent, tag_key, tag_value), as store.rollup_keys makes them.
KeyTuple = tuple[str, str, str, str, str]
TODAY = "(now() AT TIME ZONE 'UTC')::date"


class MetricSeries(models.Model):
    """A metric and how many series it has: counted as series are created."""

    metric = models.CharField(max_length=128, unique=True)
    series = models.BigIntegerField()
    first_seen = models.DateTimeField()

    class Meta:
        app_label = "metrics"
        verbose_name = "metric by series"
        verbose_name_plural = "cardinality: metrics by series"

    def __str__(self) -> str:
        return self.metric


class DimensionValue(models.Model):
    """A value of a dimension tag, the UTC day it was first seen, and whether it got rollups
    of its own or is folded into `_other`."""

    tag_key = models.CharField(max_length=128)
    tag_value = models.CharField(max_length=128)
    day = models.DateField(help_text="The UTC day it was first seen.")
    own = models.BooleanField(help_text="Has rollups of its own; otherwise its points roll up under _other.")

    class Meta:
        app_label = "metrics"
        constraints = [models.UniqueConstraint(fields=["tag_key", "tag_value"], name="dimensionvalue_unique")]
        indexes = [models.Index(fields=["tag_key", "day"], name="dimensionvalue_day")]
        verbose_name = "dimension tag value"

    def __str__(self) -> str:
        return f"{self.tag_key}={self.tag_value}"


_COUNT_SERIES = (
    "INSERT INTO metrics_metricseries (metric, series, first_seen) "
    "SELECT m, count(*), now() FROM unnest(%s::text[]) AS x(m) GROUP BY m "
    "ON CONFLICT (metric) DO UPDATE SET series = metrics_metricseries.series + excluded.series"
)
_DECIDED = (
    "SELECT d.tag_key, d.tag_value, d.own FROM metrics_dimensionvalue d "
    "JOIN unnest(%s::text[], %s::text[]) AS x(k, v) ON d.tag_key = x.k AND d.tag_value = x.v"
)
_OWN_TODAY = (
    "SELECT tag_key, count(*) FROM metrics_dimensionvalue "
    f"WHERE tag_key = ANY(%s) AND day = {TODAY} AND own GROUP BY tag_key"
)
_DECIDE = (
    "INSERT INTO metrics_dimensionvalue (tag_key, tag_value, day, own) "
    f"SELECT k, v, {TODAY}, o FROM unnest(%s::text[], %s::text[], %s::boolean[]) AS x(k, v, o) "
    "ON CONFLICT DO NOTHING"
)


def count_series(cur, metrics: list[str]) -> None:
    """Add series just created (one metric name per series) to their metrics' counts."""
    if metrics:
        cur.execute(_COUNT_SERIES, [metrics])


def fold(cur, key_tuples: dict[SeriesKey, list[KeyTuple]]) -> dict[SeriesKey, list[KeyTuple]]:
    """The rollup keys of new series with every folded dimension value replaced by `OTHER`,
    deciding the values never seen before. In the caller's transaction, which must hold the
    key counter's row lock (store._create) so that no two decide at once."""
    values = sorted({(k[3], k[4]) for ks in key_tuples.values() for k in ks if k[3]})
    if not values:
        return key_tuples
    folded = _folded(cur, values)
    if not folded:
        return key_tuples
    return {
        s: [(m, n, a, t, OTHER) if (t, v) in folded else (m, n, a, t, v) for m, n, a, t, v in ks]
        for s, ks in key_tuples.items()
    }


def _folded(cur, values: list[tuple[str, str]]) -> set[tuple[str, str]]:
    cur.execute(_DECIDED, [list(c) for c in zip(*values, strict=True)])
    own = {(k, v): o for k, v, o in cur.fetchall()}
    unseen = [tv for tv in values if tv not in own]
    if unseen:
        own.update(_decide(cur, unseen))
    return {tv for tv, o in own.items() if not o}


def _decide(cur, unseen: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """Own rollups for values first seen today while the tag has fewer than the limit of
    such values today, in name order within one creation."""
    limit = settings.DIMENSION_MAX_VALUES
    cur.execute(_OWN_TODAY, [sorted({k for k, _ in unseen})])
    today = dict(cur.fetchall())
    decided = {}
    for tag, value in unseen:
        decided[tag, value] = own = not limit or today.get(tag, 0) < limit
        today[tag] = today.get(tag, 0) + own
    rows = [(tag, value, own) for (tag, value), own in decided.items()]
    cur.execute(_DECIDE, [list(c) for c in zip(*rows, strict=True)])
    return decided


def existing(series: list[SeriesKey]) -> set[SeriesKey]:
    """Which of these series the store has."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT s.metric, s.node, s.agent, s.tags_key FROM metrics_series s "
            "JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS x(m, n, a, t) "
            "ON s.metric = x.m AND s.node = x.n AND s.agent = x.a AND s.tags_key = x.t",
            [list(c) for c in zip(*series, strict=True)],
        )
        return {tuple(r) for r in cur.fetchall()}


def series_counts(metrics: list[str]) -> dict[str, int]:
    """The number of series of each of these metrics (those without any are absent)."""
    with connection.cursor() as cur:
        cur.execute("SELECT metric, series FROM metrics_metricseries WHERE metric = ANY(%s)", [metrics])
        return dict(cur.fetchall())


def metric_count() -> int:
    """The number of metrics the store has."""
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics_metricseries")
        return cur.fetchone()[0]
