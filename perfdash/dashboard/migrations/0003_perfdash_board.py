"""The "perfdash itself" board, on the health metrics perfdash records about itself under the
node `perfdash` (docs/operations.md). Frozen here like the other seeded boards."""

from __future__ import annotations

from django.db import migrations

SLUG = "perfdash"
PANELS = [
    (
        "Batches waiting to be stored",
        "metric=perfdash_ingest_queue_batches&stat=max&window=1h",
        "batches",
        None,
    ),
    (
        "Oldest batch waiting",
        "metric=perfdash_ingest_oldest_batch_age_seconds&stat=max&window=1h",
        "s",
        60.0,
    ),
    (
        "Ingest lag, from the 202 to the commit",
        "metric=perfdash_ingest_lag_ms&stat=p50&stat=p95&window=1h",
        "ms",
        None,
    ),
    (
        "Points accepted per second",
        "metric=perfdash_points_accepted_total&stat=rate&window=1h",
        "points/s",
        None,
    ),
    ("Points stored per second", "metric=perfdash_points_stored_total&stat=rate&window=1h", "points/s", None),
    (
        "Points refused per second",
        "metric=perfdash_points_refused_total&stat=rate&window=1h",
        "points/s",
        None,
    ),
    ("Compaction backlog", "metric=perfdash_compaction_backlog_rows&stat=max&window=1h", "rows", None),
    ("Failed batches kept", "metric=perfdash_ingest_failed_batches&stat=max&window=1h", "batches", None),
    (
        "Notifications failed per second",
        "metric=perfdash_deliveries_failed_total&stat=rate&window=1h",
        "/s",
        None,
    ),
    (
        "Alert evaluation time",
        "metric=perfdash_alert_evaluation_ms&stat=p95&stat=max&window=1h",
        "ms",
        2000.0,
    ),
    ("Forecast refit time", "metric=perfdash_forecast_refit_ms&stat=max&window=24h", "ms", None),
    ("Age of the forecasts", "metric=perfdash_forecast_age_seconds&stat=max&window=24h", "s", None),
]


def seed(apps, schema_editor) -> None:
    Board = apps.get_model("dashboard", "Board")
    Panel = apps.get_model("dashboard", "Panel")
    board, _ = Board.objects.update_or_create(
        slug=SLUG,
        defaults={
            "name": "perfdash itself",
            "position": 30,
            "description": "Is perfdash keeping up? Its ingest queue and lag, points in and out, "
            "compaction, failures, and how long its alert evaluation and forecasts take.",
            "empty_hint": "No data in this window: the beat's health.record task stores these every 10 s.",
        },
    )
    board.panels.all().delete()
    for i, (title, query, units, target) in enumerate(PANELS):
        Panel.objects.create(
            board=board, position=i, title=title, query=query, chart="line", units=units, target=target
        )


def unseed(apps, schema_editor) -> None:
    apps.get_model("dashboard", "Board").objects.filter(slug=SLUG).delete()


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0002_seed_boards")]
    operations = [migrations.RunPython(seed, unseed)]
