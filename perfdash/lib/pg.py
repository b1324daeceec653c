from __future__ import annotations

import psycopg
from django.db import connection


def binary_cursor() -> psycopg.Cursor:
    """A psycopg cursor on Django's connection (so inside its transaction) that returns
    binary results: bytea arrives as raw bytes instead of hex text. Django's own cursors
    bind parameters client-side, which cannot return binary."""
    connection.ensure_connection()
    cur = psycopg.Cursor(connection.connection)
    cur.format = psycopg.pq.Format.BINARY
    return cur


def clock() -> float:
    """PostgreSQL's clock now (Unix seconds): to measure against its own timestamps without
    the skew between its machine's clock and ours."""
    with connection.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
        return cur.fetchone()[0]
