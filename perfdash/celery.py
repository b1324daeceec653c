from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perfdash.settings")

app = Celery("perfdash")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from perfdash.beat import BEAT_SCHEDULE, TASK_ROUTES  # noqa: E402

app.conf.beat_schedule = BEAT_SCHEDULE
app.conf.task_routes = TASK_ROUTES
