"""A default deploy rule, like the default threshold rules: every release verified out of the
box. It starts enabled and notifies nobody until a person adds a channel."""

from __future__ import annotations

from django.db import migrations

NAME = "A deploy made a latency p95 slower by 5 % or more"


def seed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.get_or_create(
        name=NAME,
        defaults=dict(
            kind="deploy",
            metric="",
            statistic="p95",
            scope="fleet",
            comparison="gte",
            threshold=0.05,
            for_seconds=0,
            min_samples=1,
            no_data="keep",
            send_resolved=False,
            severity="warning",
        ),
    )


def unseed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0008_deploy_rules")]
    operations = [migrations.RunPython(seed, unseed)]
