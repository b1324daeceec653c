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
