"""The big tables, in SQL: Django's ORM cannot declare partitioned tables.

Raw points carry no index: nothing reads them on a hot path (every read is served from
rollups), and an index would cut COPY speed about threefold.
"""

from __future__ import annotations

from django.db import migrations

ROLLUP_COLUMNS = """
    key_id integer NOT NULL,
    {period} timestamptz NOT NULL,
    count bigint NOT NULL,
    sum double precision NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    sketch bytea NOT NULL
"""

SQL = f"""
CREATE TABLE metrics_point (
    ts timestamptz NOT NULL,
    series_id integer NOT NULL,
    value double precision NOT NULL
) PARTITION BY RANGE (ts);

CREATE TABLE metrics_rollup_delta ({ROLLUP_COLUMNS.format(period="minute")});
CREATE INDEX metrics_rollup_delta_key ON metrics_rollup_delta (key_id, minute);

CREATE TABLE metrics_rollup_minute (
    {ROLLUP_COLUMNS.format(period="minute")},
    PRIMARY KEY (key_id, minute)
) PARTITION BY RANGE (minute);

CREATE TABLE metrics_rollup_hour (
    {ROLLUP_COLUMNS.format(period="hour")},
    PRIMARY KEY (key_id, hour)
) PARTITION BY RANGE (hour);
"""

REVERSE = """
DROP TABLE metrics_rollup_hour;
DROP TABLE metrics_rollup_minute;
DROP TABLE metrics_rollup_delta;
DROP TABLE metrics_point;
"""


class Migration(migrations.Migration):
    dependencies = [("metrics", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
