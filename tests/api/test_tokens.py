from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command

from perfdash.api.models import ApiToken, hash_token


def create(*args: str) -> str:
    out = io.StringIO()
    call_command("create_token", *args, stdout=out)
    return out.getvalue().strip()


def test_create_token_prints_it_once_and_stores_only_its_hash(db):
    raw = create("collector-1", "--scope", "ingest")
    token = ApiToken.objects.get(name="collector-1")
    assert raw.startswith("pd_") and len(raw) > 30
    assert token.token_hash == hash_token(raw) and raw not in token.token_hash
    assert token.scope_list == ["ingest"]
    assert ApiToken.authenticate(raw, "ingest") == token
    assert ApiToken.authenticate(raw, "read") is None


def test_a_token_can_have_both_scopes(db):
    raw = create("both", "--scope", "ingest", "--scope", "read")
    assert ApiToken.authenticate(raw, "read") and ApiToken.authenticate(raw, "ingest")


def test_a_scope_is_required(db):
    with pytest.raises(CommandError):
        call_command("create_token", "x")


def test_a_revoked_token_no_longer_authenticates(db):
    token, raw = ApiToken.issue("t", ["read"])
    token.revoke()
    assert ApiToken.authenticate(raw, "read") is None


def test_tokens_are_listed_and_revocable_in_the_admin(admin_client):
    token, _ = ApiToken.issue("listed", ["ingest"])
    page = admin_client.get("/admin/api/apitoken/")
    assert b"listed" in page.content and token.prefix.encode() in page.content
    admin_client.post("/admin/api/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert not token.is_active
    assert admin.site.is_registered(ApiToken)


def test_the_admin_is_styled_without_a_separate_web_server(client, db):
    css = client.get("/static/admin/css/base.css")
    assert css.status_code == 200 and b"body" in b"".join(css.streaming_content)
