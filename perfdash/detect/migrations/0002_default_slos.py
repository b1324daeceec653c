"""The SLOs of the targets perfdash is built around (docs/slos.md)."""

from __future__ import annotations

from django.db import migrations

DEFAULTS = [
    dict(name="95 % of responses within 2 s", metric="agent_response_ms", threshold=2000, objective=0.95),
    dict(name="90 % of tool calls within 5 s", metric="tool_execution_ms", threshold=5000, objective=0.90),
    dict(
        name="99 % of memory operations within 100 ms", metric="memory_op_ms", threshold=100, objective=0.99
    ),
]


def seed(apps, schema_editor):
    SLO = apps.get_model("detect", "SLO")
    for slo in DEFAULTS:
        SLO.objects.get_or_create(name=slo["name"], defaults={**slo, "kind": "latency", "period_days": 30})


def unseed(apps, schema_editor):
    apps.get_model("detect", "SLO").objects.filter(name__in=[s["name"] for s in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("detect", "0001_slos")]
    operations = [migrations.RunPython(seed, unseed)]
