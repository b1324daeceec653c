from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    """Every export rewrites its streams' rows: with room left on each page, the new version
    goes on the same page (a HOT update) and the primary key's index is not written."""

    dependencies = [("otlp", "0002_stream_updated_not_indexed")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE otlp_stream SET (fillfactor = 50)", "ALTER TABLE otlp_stream RESET (fillfactor)"
        )
    ]
