from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from perfdash.api.checks import DEV_SECRET, production_settings

STRONG = secrets.token_urlsafe(50)


def ids(settings) -> list[str]:
    return [p.id for p in production_settings()]


def test_local_development_passes(settings):
    settings.SECRET_KEY, settings.ALLOWED_HOSTS, settings.DEBUG = DEV_SECRET, ["127.0.0.1", "localhost"], True
    assert ids(settings) == []


def test_a_public_host_with_the_development_secret_is_an_error(settings):
    settings.SECRET_KEY, settings.ALLOWED_HOSTS, settings.DEBUG = DEV_SECRET, ["perfdash.example.com"], False
    assert ids(settings) == ["perfdash.E001"]


def test_debug_and_private_webhooks_on_a_public_host_are_warnings(settings):
    settings.SECRET_KEY, settings.ALLOWED_HOSTS = STRONG, ["perfdash.example.com"]
    settings.DEBUG, settings.ALERTS_ALLOW_PRIVATE_URLS = True, True
    assert ids(settings) == ["perfdash.W001", "perfdash.W002"]


@pytest.mark.parametrize(
    "secret",
    ["change-me", "change-me" * 6, "a-real-secret" * 4, "ab" * 30, secrets.token_urlsafe(20)],
    ids=["compose-default", "padded-placeholder", "has-secret", "repetitive", "short"],
)
def test_a_public_host_with_a_weak_secret_is_an_error(settings, secret):
    settings.SECRET_KEY, settings.ALLOWED_HOSTS, settings.DEBUG = secret, ["perfdash.example.com"], False
    assert ids(settings) == ["perfdash.E001"]


def test_a_public_host_with_a_random_secret_passes(settings):
    settings.SECRET_KEY, settings.ALLOWED_HOSTS, settings.DEBUG = STRONG, ["perfdash.example.com"], False
    assert ids(settings) == []


def test_check_deploy_passes_clean_with_a_production_environment(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "perfdash.settings",
        "SECRET_KEY": STRONG,
        "ALLOWED_HOSTS": "perfdash.example.com",
        "SITE_URL": "https://perfdash.example.com",
        "DEBUG": "0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
