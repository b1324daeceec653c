"""Default rules from the ElixirChain performance targets (docs/alerts.md). They start enabled
and notify nobody until a person adds a channel."""

from __future__ import annotations

from django.db import migrations

DEFAULTS = [
    dict(
        name="Agent response p95 above 2 s for 5 min",
        metric="agent_response_ms",
        statistic="p95",
        scope="fleet",
        comparison="gt",
        threshold=2000,
        recovery_threshold=1800,
        window_seconds=300,
        for_seconds=300,
        min_samples=20,
        severity="warning",
    ),
    dict(
        name="Tool execution p90 above 5 s",
        metric="tool_execution_ms",
        statistic="p90",
        scope="fleet",
        comparison="gt",
        threshold=5000,
        recovery_threshold=4500,
        window_seconds=300,
        for_seconds=120,
        min_samples=20,
        severity="warning",
    ),
    dict(
        name="Tool execution timeout (30 s or more)",
        metric="tool_execution_ms",
        statistic="max",
        scope="fleet",
        comparison="gte",
        threshold=30000,
        window_seconds=60,
        severity="critical",
    ),
    dict(
        name="Memory operation p99 above 100 ms",
        metric="memory_op_ms",
        statistic="p99",
        scope="fleet",
        comparison="gt",
        threshold=100,
        recovery_threshold=90,
        window_seconds=300,
        for_seconds=120,
        min_samples=50,
        severity="warning",
    ),
    dict(
        name="Agent memory above 100 MB",
        metric="agent_memory_bytes",
        statistic="max",
        scope="agent",
        comparison="gt",
        threshold=100e6,
        recovery_threshold=95e6,
        window_seconds=300,
        for_seconds=60,
        severity="warning",
    ),
    dict(
        name="Active agents per node above capacity (1000)",
        metric="active_agents",
        statistic="max",
        scope="node",
        comparison="gt",
        threshold=1000,
        window_seconds=120,
        severity="critical",
    ),
]


def seed(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    for rule in DEFAULTS:
        AlertRule.objects.get_or_create(name=rule["name"], defaults=rule)


def unseed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.filter(name__in=[r["name"] for r in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
