"""Settings for the test suite: the real PostgreSQL and Redis, on their own database and
Redis db so `make test` never touches the data of a running `make run`."""

from __future__ import annotations

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from perfdash.settings import *  # noqa: F403
