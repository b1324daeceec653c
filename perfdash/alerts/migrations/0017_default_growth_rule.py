"""A default growth rule: an agent whose memory grows far faster than its node's other agents'
(a leak while it is young, docs/slos.md). Like the other default rules it starts enabled and
notifies nobody until a person adds a channel."""

from __future__ import annotations

from django.db import migrations

NAME = "Agent's memory growing far faster than its node's other agents"


def seed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.get_or_create(
        name=NAME,
        defaults=dict(
            kind="outlier",
            metric="agent_memory_bytes",
            statistic="growth",
            scope="node",
            comparison="gt",
            threshold=5,
            recovery_threshold=4,
            window_seconds=300,
            for_seconds=0,
            min_samples=3,
            no_data="keep",
            severity="warning",
        ),
    )


def unseed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0016_growth_statistic")]
    operations = [migrations.RunPython(seed, unseed)]
