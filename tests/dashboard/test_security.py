"""Web security a deployment needs: a content security policy, throttled logins, password
rules, and no page without a login."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

PAGES = ["/", "/nodes/node-1/", "/agents/agent-1/", "/tools/", "/capacity/", "/login/"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_allow_scripts_from_this_site_only(viewer, path):
    response = viewer.get(path)
    policy = dict(
        d.strip().split(" ", 1) for d in response["Content-Security-Policy"].split(";") if d.strip()
    )
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    inline = re.findall(rb"<script(?![^>]*\bsrc=)[^>]*>", response.content)
    assert inline == []


def test_repeated_wrong_passwords_lock_the_login_out(client, db, settings):
    User.objects.create_user("admin", password="a-long-enough-passphrase")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        wrong = client.post("/login/", {"username": "admin", "password": "guess"})
        assert wrong.status_code == 200  # the form again, with its error
    assert client.post("/login/", {"username": "admin", "password": "guess"}).status_code == 429
    locked = client.post("/login/", {"username": "admin", "password": "a-long-enough-passphrase"})
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    assert "_auth_user_id" not in client.session


def test_a_right_password_before_the_limit_logs_in(client, db, settings):
    User.objects.create_user("admin", password="a-long-enough-passphrase")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/login/", {"username": "admin", "password": "guess"})
    assert (
        client.post("/login/", {"username": "admin", "password": "a-long-enough-passphrase"}).status_code
        == 302
    )


@pytest.mark.parametrize("password", ["short", "password123", "12345678901234", "admin-admin"])
def test_weak_passwords_are_refused(db, password):
    with pytest.raises(ValidationError):
        validate_password(password, User(username="admin-admin"))
