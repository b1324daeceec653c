"""Live announcements: what workers tell the web processes after a commit.

Below ingest, alerts and forecasting (which announce) and the dashboard (which listens), so
that nothing below the dashboard imports it.
"""
