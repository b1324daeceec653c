from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    """One state row per metric of a resource and scope (otlp_streamstate) instead of one per
    stream. Every export rewrites its rows: with room left on each page the new version goes
    on the same page (a HOT update), and a small blob stays in the row, uncompressed (not
    moved to TOAST, which would write and index chunks of its own at every export); a metric
    with many streams outgrows that, and its whole blob is rewritten at each export."""

    dependencies = [("otlp", "0004_coarse_metric")]

    operations = [
        migrations.CreateModel(
            name="StreamState",
            fields=[
                ("key", models.BinaryField(primary_key=True, serialize=False)),
                ("state", models.BinaryField(null=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.RunSQL(
            "ALTER TABLE otlp_streamstate SET (fillfactor = 50, toast_tuple_target = 8160); "
            "ALTER TABLE otlp_streamstate ALTER COLUMN state SET STORAGE MAIN",
            migrations.RunSQL.noop,
        ),
    ]
