"""Each seeded SLO's burn-rate rules: one that pages (critical) and one that opens a ticket
(warning). They start enabled and notify nobody until a person adds a channel."""

from __future__ import annotations

from django.db import migrations

SEVERITIES = (
    ("critical", "burns its error budget fast (page)"),
    ("warning", "burns its error budget (ticket)"),
)


def seed(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    for slo in apps.get_model("detect", "SLO").objects.all():
        for severity, says in SEVERITIES:
            AlertRule.objects.get_or_create(
                name=f"{slo.name}: {says}",
                defaults=dict(
                    kind="burn",
                    slo=slo,
                    metric=slo.metric,
                    statistic="count",
                    scope="fleet",
                    comparison="gte",
                    threshold=1.0,
                    min_samples=1,
                    no_data="keep",
                    severity=severity,
                ),
            )


def unseed(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.filter(kind="burn").delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0012_burn_rules"), ("detect", "0002_default_slos")]
    operations = [migrations.RunPython(seed, unseed)]
