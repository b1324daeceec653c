from __future__ import annotations

import io
import json
import os
from pathlib import Path

from django.contrib.auth.models import User
from django.core.management import call_command

from perfdash.api.management.commands import demo_setup
from perfdash.api.models import ApiToken


def run() -> dict:
    out = io.StringIO()
    call_command("demo_setup", stdout=out)
    return json.loads(out.getvalue())


def test_each_start_gets_a_fresh_demo_token_and_the_old_one_stops_working(db, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_setup, "LOGIN_FILE", tmp_path / ".demo-login")
    first = run()
    second = run()
    assert first["first_start"] and second["first_start"]  # nothing ingested yet
    assert ApiToken.authenticate(first["token"], "ingest") is None
    assert ApiToken.authenticate(second["token"], "ingest").name == "demo-fleet"


def test_a_first_admin_login_is_made_once_and_kept_out_of_the_output(db, tmp_path, monkeypatch):
    login_file = tmp_path / ".demo-login"
    monkeypatch.setattr(demo_setup, "LOGIN_FILE", login_file)
    result = run()
    password = login_file.read_text().split("password: ")[1].strip()
    assert password not in json.dumps(result) and ".demo-login" in result["login"]
    assert User.objects.get(username="admin").check_password(password)
    assert oct(login_file.stat().st_mode)[-3:] == "600"
    run()
    assert User.objects.count() == 1


def test_the_login_file_is_private_from_the_moment_it_exists(db, tmp_path, monkeypatch):
    login_file = tmp_path / ".demo-login"
    monkeypatch.setattr(demo_setup, "LOGIN_FILE", login_file)
    # No narrowing afterwards: whatever mode the file was made with is what it has.
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    old_umask = os.umask(0o022)
    try:
        run()
    finally:
        os.umask(old_umask)
    assert oct(login_file.stat().st_mode)[-3:] == "600"
