"""The "LLM providers and cache" board as issue 17 asks for it: tokens per second by model,
provider and type (input or output), the cache hit rate over time and by tool and by model
(grouped ratios), errors per second by error type, LLM p95 by provider and the time to first
token. Frozen here like the other seeded boards; only the panels change."""

from __future__ import annotations

from django.db import migrations

SLUG = "llm"
DESCRIPTION = "Tokens, the prompt cache, errors and LLM latency, by model, provider, type and tool."
# (title, query, chart, units)
PANELS = [
    ("Tokens per second by model", "metric=tokens_total&stat=rate&group=model&window=1h", "area", "tokens/s"),
    (
        "Tokens per second by provider",
        "metric=tokens_total&stat=rate&group=provider&window=1h",
        "area",
        "tokens/s",
    ),
    (
        "Tokens per second by type (input, output)",
        "metric=tokens_total&stat=rate&group=type&window=1h",
        "area",
        "tokens/s",
    ),
    ("Cache hit rate", "ratio=hit_rate&window=1h", "line", "hit rate"),
    ("Cache hit rate by tool", "ratio=hit_rate&group=tool&window=1h", "line", "hit rate"),
    ("Cache hit rate by model", "ratio=hit_rate&group=model&window=1h", "line", "hit rate"),
    (
        "Errors per second by error type",
        "metric=errors_total&stat=rate&group=error&window=1h",
        "bar",
        "errors/s",
    ),
    ("LLM call p95 by provider", "metric=llm_call_ms&stat=p95&group=provider&window=1h", "line", "ms"),
    (
        "LLM time to first token",
        "metric=llm_time_to_first_token_ms&stat=p50&stat=p95&window=1h",
        "line",
        "ms",
    ),
]


def _replace_panels(apps, panels, description) -> None:
    Board = apps.get_model("dashboard", "Board")
    Panel = apps.get_model("dashboard", "Panel")
    board = Board.objects.filter(slug=SLUG).first()
    if board is None:  # deleted by staff: not brought back
        return
    board.description = description
    board.save(update_fields=["description"])
    board.panels.all().delete()
    for i, (title, query, chart, units) in enumerate(panels):
        Panel.objects.create(board=board, position=i, title=title, query=query, chart=chart, units=units)


def forward(apps, schema_editor) -> None:
    _replace_panels(apps, PANELS, DESCRIPTION)


def backward(apps, schema_editor) -> None:
    from importlib import import_module

    seeded = import_module("perfdash.dashboard.migrations.0002_seed_boards").SEEDED
    spec = next(b for b in seeded["boards"] if b["slug"] == SLUG)
    panels = [(p["title"], p["query"], p.get("chart", "line"), p.get("units", "")) for p in spec["panels"]]
    _replace_panels(apps, panels, spec["description"])


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0003_perfdash_board")]
    operations = [migrations.RunPython(forward, backward)]
