"""A default outlier rule, like the default threshold rules: an agent much slower than the
other agents of its node. It starts enabled and notifies nobody until a person adds a channel."""

from __future__ import annotations

from django.db import migrations

NAME = "Agent's median response far above its node's other agents"


def seed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.get_or_create(
        name=NAME,
        defaults=dict(
            kind="outlier",
            metric="agent_response_ms",
            statistic="p50",
            scope="node",
            comparison="gt",
            threshold=5,
            window_seconds=3600,
            for_seconds=600,
            min_samples=20,
            no_data="keep",
            severity="warning",
        ),
    )


def unseed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0010_outlier_rules")]
    operations = [migrations.RunPython(seed, unseed)]
