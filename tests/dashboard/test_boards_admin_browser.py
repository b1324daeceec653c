"""Boards out of and into the admin in Debian's Chromium: a board exported with the admin's
action is downloaded as JSON, imported back changed through the admin's import page, and the
change shows on the board's page; a bad file is a message naming the panel, and imports
nothing. Screenshots land in test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import sync_playwright

from perfdash.dashboard.models import Board
from tests.dashboard.browser import ARTIFACTS, CHROMIUM, log_in, open_page
from tests.dashboard.test_boards import SCRIPT, seed_boards

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run"),
]
TITLES = """() => [...document.querySelectorAll('#panels .js-plotly-plot')].map(
  (el) => el.layout.title.text.split('<br>')[0])"""


def test_a_board_exported_from_the_admin_comes_back_changed(live_server_url, tmp_path):
    User.objects.create_user("curator", password="curator-password", is_staff=True, is_superuser=True)
    seed_boards()
    beam = Board.objects.get(slug="beam")
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    # No database calls inside this block: Playwright runs an event loop in this thread.
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/admin/dashboard/board/")
        log_in(page, "curator")
        page.check(f"input[name=_selected_action][value='{beam.pk}']")
        page.select_option("select[name=action]", "export_json")
        with page.expect_download() as waiting:
            page.click("button[name=index]")
        download = waiting.value
        exported = tmp_path / "exported.json"
        download.save_as(exported)

        data = json.loads(exported.read_text())
        [board] = data["boards"]
        board["name"] = "BEAM, curated"
        board["panels"] = board["panels"][:2]
        board["panels"][0]["title"] = f"Total memory {SCRIPT}"
        changed = tmp_path / "changed.json"
        changed.write_text(json.dumps(data))
        bad = tmp_path / "bad.json"
        board["panels"][1]["query"] = "metric=vm_memory_total&stat=p97"
        bad.write_text(json.dumps(data))

        page.click("text=Import boards")
        page.wait_for_selector("#board-import")
        page.set_input_files("input[name=file]", str(bad))
        page.click("#board-import input[type=submit]")
        refused = page.locator(".messagelist").inner_text()
        page.screenshot(path=str(ARTIFACTS / "admin-board-import-refused.png"), full_page=True)

        page.set_input_files("input[name=file]", str(changed))
        page.click("#board-import input[type=submit]")
        page.wait_for_url("**/admin/dashboard/board/")
        imported = page.locator(".messagelist").inner_text()
        listed = page.locator("#result_list").inner_text()
        page.screenshot(path=str(ARTIFACTS / "admin-board-imported.png"), full_page=True)

        page.goto(f"{live_server_url}/boards/beam/")
        page.wait_for_selector("body[data-rendered]")
        heading = page.locator("h1").inner_text()
        titles = page.evaluate(TITLES)
        page.screenshot(path=str(ARTIFACTS / "board-beam-curated.png"), full_page=True)
        assert page.evaluate("() => window.__xss") is None
        browser.close()
    assert errors == []

    assert download.suggested_filename == "boards.json"
    assert json.loads(exported.read_text())["boards"][0]["slug"] == "beam"
    assert "board 'BEAM, curated', panel 2 ('VM memory: processes')" in refused
    assert refused.startswith("Nothing was imported from bad.json: ") and "stat must be one of" in refused
    assert "Imported from changed.json: BEAM, curated (2 panels)." in imported
    assert "BEAM, curated" in listed
    assert heading.startswith("BEAM, curated")
    # The title is shown as text: Plotly's titles take HTML, so the page escapes it.
    assert titles == ['Total memory &lt;script&gt;alert("x")&lt;/script&gt;', "VM memory: processes"]
