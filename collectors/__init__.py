"""perfdash collectors: the client side. Talks to the server only through ingest API v1 and
never imports Django."""

from __future__ import annotations

from collectors.client import Client, Timed

__all__ = ["Client", "Timed"]
