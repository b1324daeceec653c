from __future__ import annotations

from celery import shared_task

from perfdash.dashboard import boards
from perfdash.dashboard.models import Board


@shared_task(name="dashboard.precompute_boards", queue="forecast", ignore_result=True)
def precompute_boards() -> int:
    """The saved boards' long panels, computed ahead of their viewers (boards.precompute). On
    the queue of the forecasts' refits, work derived from history that no one waits on: not
    on `alerts`, where a pass would delay rule evaluation."""
    specs = [board.spec() for board in Board.objects.prefetch_related("panels").order_by("position", "name")]
    return boards.precompute(specs)
