"""The explorer in Debian's Chromium: its URL round-trips (controls -> URL -> reload -> the same
controls and the same chart), a custom metric pushed through the ingest API appears without a
reload, and a script in an agent name or a tag value stays text. Screenshots land in
test-artifacts/."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import sync_playwright

from perfdash.api.models import ApiToken
from tests.conftest import wait_until
from tests.dashboard.browser import ARTIFACTS, CHROMIUM, XSS, log_in, open_page, post, stored

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run"),
]
CUSTOM = "checkout_latency_ms"
# The chart's traces as the page drew them: names and values.
TRACES = """() => [...document.querySelectorAll('#charts .js-plotly-plot')].map(
  (el) => el.data.filter((t) => t.name !== 'events').map((t) => [t.name, t.y]))"""


def responses(now: float) -> list[dict]:
    out = []
    for agent, value, n in [("agent-1", 2000.0, 30), ("agent-2", 500.0, 20), (XSS, 900.0, 10)]:
        out += [
            {
                "ts": now - 1,
                "node": "node-1",
                "agent": agent,
                "metric": "agent_response_ms",
                "value": value + i,
            }
            for i in range(n)
        ]
    for metric, tool, n in [
        ("cache_hits_total", "web_search", 15),
        ("cache_misses_total", "web_search", 5),
        ("cache_hits_total", "calculator", 1),
    ]:
        out += [
            {
                "ts": now - 1,
                "node": "node-1",
                "agent": "agent-1",
                "metric": metric,
                "value": 1,
                "tags": {"tool": tool},
            }
            for _ in range(n)
        ]
    return out


def custom(now: float) -> list[dict]:
    return [
        {
            "ts": now - 1,
            "node": "node-1",
            "agent": XSS,
            "metric": CUSTOM,
            "value": 100.0 + i,
            "tags": {"tool": XSS},
        }
        for i in range(12)
    ]


def test_explorer_urls_round_trip_and_a_new_metric_arrives_live_as_text(
    live_server_url, celery_worker, clean_tables
):
    User.objects.create_user("explorer", password="explorer-password", is_staff=True)
    token = ApiToken.issue("browser", ["ingest"])[1]
    post(live_server_url, token, responses(time.time()))
    wait_until(lambda: stored() == 81, what="the first points")
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    # No database calls inside this block: Playwright runs an event loop in this thread.
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/explore/")
        log_in(page, "explorer")
        page.wait_for_selector("body[data-rendered]")
        assert page.locator("nav a", has_text="Explore").count() == 1

        # Controls -> URL.
        page.fill("[name=metric]", "agent_response_ms")
        for stat in ["p50", "p95", "count"]:
            page.check(f"input[name=stat][value={stat}]")
        page.fill("[name=window]", "1h")
        page.select_option("[name=group]", "agent")
        page.fill("[name=top]", "2")
        page.click("#explore-form button[type=submit]")
        page.wait_for_url("**group=agent**")
        page.wait_for_selector("body[data-rendered]")
        asked = parse_qs(urlparse(page.url).query)
        drawn = page.evaluate(TRACES)
        rows = page.locator("#groups tbody tr").all_inner_texts()
        alert = page.locator("#alert-link").get_attribute("href")
        page.screenshot(path=str(ARTIFACTS / "explore-grouped.png"), full_page=True)

        # URL -> reload -> the same controls and the same chart.
        page.reload()
        page.wait_for_selector("body[data-rendered]")
        again = page.evaluate(TRACES)
        controls = {
            "metric": page.input_value("[name=metric]"),
            "group": page.input_value("[name=group]"),
            "top": page.input_value("[name=top]"),
            "window": page.input_value("[name=window]"),
            "stats": page.evaluate(
                "() => [...document.querySelectorAll('input[name=stat]:checked')].map((b) => b.value)"
            ),
        }

        # A ratio of two counters, from the fixed list.
        page.goto(f"{live_server_url}/explore/?ratio=hit_rate&window=1h")
        page.wait_for_selector("body[data-rendered]")
        hit_rate = page.locator("#groups tbody tr").all_inner_texts()
        page.screenshot(path=str(ARTIFACTS / "explore-ratio.png"), full_page=True)
        # The same ratio by tool: a line and a row per tool, counted in lookups.
        page.goto(f"{live_server_url}/explore/?ratio=hit_rate&group=tool&window=1h")
        page.wait_for_selector("body[data-rendered]")
        by_tool = page.locator("#groups tbody tr").all_inner_texts()
        by_tool_head = page.locator("#groups thead").inner_text()
        by_tool_lines = page.evaluate(TRACES)
        page.screenshot(path=str(ARTIFACTS / "explore-ratio-by-tool.png"), full_page=True)

        # A metric nobody has sent yet: said so, then drawn once its points arrive, no reload.
        page.goto(f"{live_server_url}/explore/?metric={CUSTOM}&stat=p95&group=tool&window=5m")
        page.wait_for_selector("body[data-rendered]")
        page.wait_for_selector("#live-status[data-state=live]")
        assert page.locator("#unseen").is_visible()
        empty_chart = page.locator("#charts").inner_text()
        page.screenshot(path=str(ARTIFACTS / "explore-not-seen.png"), full_page=True)
        post(live_server_url, token, custom(time.time()))
        page.wait_for_function(
            "() => document.querySelector('#unseen').hidden && "
            "document.querySelectorAll('#groups tbody tr').length === 2",
            timeout=20_000,
        )
        live_rows = page.locator("#groups tbody tr").all_inner_texts()
        legend = page.locator("#charts").inner_text()
        offered = page.evaluate(
            "() => [...document.querySelectorAll('#metric-list option')].map((o) => o.value)"
        )
        page.screenshot(path=str(ARTIFACTS / "explore-live-custom.png"), full_page=True)
        assert page.evaluate("() => window.__xss") is None
        browser.close()
    assert errors == []

    assert asked["metric"] == ["agent_response_ms"] and asked["stat"] == ["count", "p50", "p95"]
    assert asked["group"] == ["agent"] and asked["top"] == ["2"] and asked["window"] == ["1h"]
    assert controls == {
        "metric": "agent_response_ms",
        "group": "agent",
        "top": "2",
        "window": "1h",
        "stats": ["count", "p50", "p95"],  # in the form's order
    }
    assert again == drawn
    names = [name for chart in drawn for name, _ in chart]
    assert {"agent-1 · p95", "agent-2 · p50", "all · p95", "agent-1 · count"} <= set(names)
    assert [r.split("\t")[0] for r in rows] == ["agent-1", "agent-2", "others (1 agent)", "all"]
    assert rows[0].split("\t")[1:3] == ["30", "30"] and rows[0].endswith(" s")  # points, count, p50, p95
    assert "statistic=p50" in alert and "metric=agent_response_ms" in alert and "scope=agent" in alert

    assert hit_rate == ["all\t21\t76.2 %"]
    assert "lookups" in by_tool_head
    assert by_tool == ["web_search\t20\t75 %", "calculator\t1\ttoo few lookups (1 < 10)", "all\t21\t76.2 %"]
    assert {name for chart in by_tool_lines for name, _ in chart} == {
        "web_search · ratio",
        "calculator · ratio",
        "all · ratio",
    }
    assert "no data in this window" in empty_chart
    assert [r.split("\t")[0] for r in live_rows] == [XSS, "all"]
    assert XSS in legend  # the tag value is shown, as text
    assert CUSTOM in offered
