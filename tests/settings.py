"""Settings for the test suite: the real PostgreSQL and Redis, isolated per test session.

Each session (and the servers and workers it starts, which inherit PERFDASH_TEST_SESSION)
gets its own test database and its own Redis key prefix, so two suites can run at once and
neither touches the data of a running `make run`.
"""

from __future__ import annotations

import os

SESSION = os.environ.setdefault("PERFDASH_TEST_SESSION", str(os.getpid()))
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from perfdash.settings import *  # noqa: E402, F403
from perfdash.settings import CELERY_BROKER_TRANSPORT_OPTIONS, CHANNEL_LAYERS, DATABASES  # noqa: E402

DATABASES["default"]["TEST"] = {"NAME": f"test_perfdash_{SESSION.split('-')[0]}"}
CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": f"t{SESSION}:"}
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"t{SESSION}:asgi"
REDIS_KEY_PREFIX = f"t{SESSION}:perfdash:"
# A test may start a worker that loads extra modules (e.g. tests.crashing_worker).
CELERY_IMPORTS = [m for m in os.environ.get("PERFDASH_TEST_WORKER_IMPORTS", "").split(",") if m]
