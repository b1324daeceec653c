from __future__ import annotations

import os

# Before numpy loads: OpenBLAS's extra thread spins through every forecast fit on these
# 2-core machines without speeding it up, taking a core from ingest and PostgreSQL.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from perfdash.celery import app as celery_app

__all__ = ["celery_app"]
