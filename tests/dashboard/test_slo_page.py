"""The SLO page: its data on the real database, and the page in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import sync_playwright

from perfdash.detect.models import SLO
from tests.dashboard.browser import ARTIFACTS, CHROMIUM, log_in, open_page
from tests.detect.conftest import seeded  # noqa: F401 (the fixture)
from tests.detect.test_slos import DAY, HOUR, responses


def test_the_data_has_each_slos_figures_as_people_read_them(viewer, seeded):  # noqa: F811
    responses(2 * DAY, 20_000, 0.03)
    data = viewer.get("/slos/data").json()
    response = next(s for s in data["slos"] if s["metric"] == "agent_response_ms")
    assert response["shown"]["what"] == "95 % of agent_response_ms at or below 2 s, over 30 days"
    assert response["shown"]["attainment"].endswith(" %") and response["shown"]["budget_left"].endswith(" %")
    assert response["shown"]["time_left"].endswith(" days")
    assert response["burn_thresholds"] == pytest.approx({"page_1h": 14.4, "page_6h": 6.0, "ticket_3d": 1.0})
    memory = next(s for s in data["slos"] if s["metric"] == "memory_op_ms")
    assert memory["shown"]["attainment"] == "n/a" and memory["burn_down"] == {"t": [], "left": []}


def test_the_page_needs_a_login(client, db):
    assert client.get("/slos/").status_code == 302 and client.get("/slos/data").status_code == 302


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run")
def test_the_slo_page_shows_a_burning_slo_and_its_burn_down(live_server_url, seeded):  # noqa: F811
    User.objects.create_user("viewer", password="viewer-password")
    responses(2 * DAY, 20_000, 0.01)
    responses(2 * HOUR, 5000, 1.0, offset=30)
    SLO.objects.create(name="Empty", metric="nothing_ms", threshold=10, objective=0.9)
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/slos/")
        log_in(page, "viewer")
        page.wait_for_selector("body[data-rendered]")
        cards = page.locator(".slo")
        names = [cards.nth(i).locator("h2").inner_text() for i in range(cards.count())]
        badges = dict(zip(names, page.locator(".slo .alerting").all_inner_texts(), strict=True))
        chart = page.evaluate(
            """() => { const card = [...document.querySelectorAll('.slo')].find(
                         (c) => c.querySelector('h2').textContent.startsWith('95 %'));
                       const el = card.querySelector('.chart');
                       return [el.data.length, el._fullLayout.yaxis.title.text]; }"""
        )
        hot = page.locator(".slo td.hot").count()
        page.screenshot(path=str(ARTIFACTS / "slos.png"), full_page=True)
        browser.close()
    assert errors == []
    response = next(n for n in names if n.startswith("95 % of responses within 2 s"))
    assert badges[response] == "burning: page"
    assert next(b for n, b in badges.items() if n.startswith("Empty")) == "no data yet"
    assert chart == [1, "budget left (%)"] and hot >= 2
