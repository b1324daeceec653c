"""The "perfdash itself" board shows the compaction lag in seconds (how long rollup deltas have
waited, at most), next to the backlog in rows it had: the lag is what a reader notices and
what a rule can hold to a target; the rows say how much is left to fold."""

from __future__ import annotations

from django.db import migrations
from django.db.models import F

SLUG = "perfdash"
BACKLOG = "metric=perfdash_compaction_backlog_rows&stat=max&window=1h"
LAG = ("Compaction lag", "metric=perfdash_compaction_lag_seconds&stat=max&window=1h", "s")


def forward(apps, schema_editor) -> None:
    Board = apps.get_model("dashboard", "Board")
    Panel = apps.get_model("dashboard", "Panel")
    board = Board.objects.filter(slug=SLUG).first()
    if board is None or board.panels.filter(query=LAG[1]).exists():  # removed by staff: not brought back
        return
    backlog = board.panels.filter(query=BACKLOG).first()
    if backlog is None:
        position = (board.panels.order_by("-position").values_list("position", flat=True).first() or 0) + 1
    else:  # just before the backlog; the other panels keep their order
        position = backlog.position
        board.panels.filter(position__gte=position).update(position=F("position") + 1)
    title, query, units = LAG
    Panel.objects.create(board=board, position=position, title=title, query=query, chart="line", units=units)


def backward(apps, schema_editor) -> None:
    apps.get_model("dashboard", "Panel").objects.filter(board__slug=SLUG, query=LAG[1]).delete()


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0004_llm_board_by_type")]
    operations = [migrations.RunPython(forward, backward)]
