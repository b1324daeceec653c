"""A default rule on perfdash's own health (docs/operations.md): ingest is more than 60 s
behind, read from the age of the oldest batch still waiting to be stored. It starts enabled
and notifies nobody until a person adds a channel."""

from __future__ import annotations

from django.db import migrations

NAME = "perfdash: ingest is more than 60 s behind"


def seed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.get_or_create(
        name=NAME,
        defaults=dict(
            kind="threshold",
            metric="perfdash_ingest_oldest_batch_age_seconds",
            statistic="max",
            scope="fleet",
            node="perfdash",
            comparison="gt",
            threshold=60,
            recovery_threshold=30,
            # Recorded every 10 s: a minute holds several readings, and the age itself says
            # how long ingest has been behind, so no pending period is added to it.
            window_seconds=60,
            for_seconds=0,
            no_data="keep",
            severity="critical",
        ),
    )


def unseed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0014_anomaly_rules")]
    operations = [migrations.RunPython(seed, unseed)]
