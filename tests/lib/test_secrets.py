"""Secrets stay out of what perfdash shows: URL passwords, query strings, webhook paths."""

from __future__ import annotations

import pytest

from perfdash.alerts.models import NotificationChannel
from perfdash.lib.secrets import MASK, MaskingReporterFilter, mask_url

SLACK = "https://user:S3cretPass@hooks.slack.com/services/T1/B2/very-secret?token=abc123"


def test_a_url_keeps_its_user_and_host_and_loses_its_password_and_query():
    assert mask_url(SLACK) == f"https://user:{MASK}@hooks.slack.com/services/T1/B2/very-secret?{MASK}"
    assert mask_url("redis://:pw@127.0.0.1:6379/0") == f"redis://:{MASK}@127.0.0.1:6379/0"
    assert mask_url("smtp://relay.example:25") == "smtp://relay.example:25"


def test_a_malformed_url_shows_nothing_of_itself():
    assert mask_url("https://user:pw@host:99999/x") == MASK


def test_a_channel_url_shows_only_where_it_goes():
    channel = NotificationChannel(kind=NotificationChannel.Kind.SLACK, url=SLACK)
    assert channel.masked_url == "https://hooks.slack.com/…"
    for secret in ("S3cretPass", "very-secret", "abc123", "user"):
        assert secret not in channel.masked_url


@pytest.mark.parametrize("name", ["REDIS_URL", "CELERY_BROKER_URL", "CHANNEL_LAYERS"])
def test_error_pages_mask_the_passwords_in_url_settings(settings, name):
    settings.REDIS_URL = settings.CELERY_BROKER_URL = "redis://:hunter2-redis@10.0.0.5:6379/0"
    settings.CHANNEL_LAYERS = {"default": {"CONFIG": {"hosts": [{"address": settings.REDIS_URL}]}}}
    shown = str(MaskingReporterFilter().get_safe_settings()[name])
    assert "hunter2-redis" not in shown and "10.0.0.5" in shown
