from __future__ import annotations

from perfdash.api.checks import DEV_SECRET, production_settings


def ids(settings) -> list[str]:
    return [p.id for p in production_settings()]


def test_local_development_passes(settings):
    settings.SECRET_KEY, settings.ALLOWED_HOSTS, settings.DEBUG = DEV_SECRET, ["127.0.0.1", "localhost"], True
    assert ids(settings) == []


def test_a_public_host_with_the_development_secret_is_an_error(settings):
    settings.SECRET_KEY, settings.ALLOWED_HOSTS, settings.DEBUG = DEV_SECRET, ["perfdash.example.com"], False
    assert ids(settings) == ["perfdash.E001"]


def test_debug_and_private_webhooks_on_a_public_host_are_warnings(settings):
    settings.SECRET_KEY, settings.ALLOWED_HOSTS = "a-real-secret" * 4, ["perfdash.example.com"]
    settings.DEBUG, settings.ALERTS_ALLOW_PRIVATE_URLS = True, True
    assert ids(settings) == ["perfdash.W001", "perfdash.W002"]
