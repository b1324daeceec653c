"""Every task the beat schedules is one a worker knows, on a queue a worker consumes."""

from __future__ import annotations

from perfdash.beat import BEAT_SCHEDULE
from perfdash.celery import app
from perfdash.run import QUEUES


def test_every_scheduled_task_is_registered_and_routed_to_a_consumed_queue():
    app.loader.import_default_modules()
    consumed = set(QUEUES.split(","))  # what `make run`'s worker consumes
    for name, entry in BEAT_SCHEDULE.items():
        task = app.tasks.get(entry["task"])
        assert task is not None, name
        queue = app.amqp.router.route({}, entry["task"])["queue"].name
        assert queue in consumed, (name, queue)
