"""Loaded by a test's worker (PERFDASH_TEST_WORKER_IMPORTS): kills the whole worker, pool and
all, at a chosen point of storing a batch, as a crash or the OOM killer would.

PERFDASH_CRASH_AT: "received" (the message taken, nothing stored) or "stored" (committed, not
yet acknowledged: the task acknowledges late).
"""

from __future__ import annotations

import os
import signal

from celery.signals import task_postrun, task_prerun


def _crash(task=None, **_: object) -> None:
    if task is not None and task.name == "ingest.store_batch":
        os.killpg(os.getpgid(0), signal.SIGKILL)


_POINTS = {"received": task_prerun, "stored": task_postrun}
if os.environ.get("PERFDASH_CRASH_AT") in _POINTS:
    _POINTS[os.environ["PERFDASH_CRASH_AT"]].connect(_crash, weak=False)
