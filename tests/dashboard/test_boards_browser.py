"""Boards in Debian's Chromium: a custom metric pushed through the ingest API appears on a
board's panel without a reload (its tag value, a script, stays text), the board's window
applies to every panel, and the seeded boards draw titles, units and their empty states.
Screenshots land in test-artifacts/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import sync_playwright

from perfdash.api.models import ApiToken
from perfdash.dashboard import boards
from perfdash.dashboard.models import Board
from tests.conftest import wait_until
from tests.dashboard.browser import ARTIFACTS, CHROMIUM, XSS, log_in, open_page, post, stored
from tests.dashboard.test_boards import seed_boards

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run"),
]
CUSTOM = "checkout_latency_ms"
# Each panel's traces as the page drew them: names and values.
TRACES = """() => [...document.querySelectorAll('#panels .js-plotly-plot')].map(
  (el) => el.data.filter((t) => t.name !== 'events').map((t) => [t.name, t.y]))"""
TITLES = """() => [...document.querySelectorAll('#panels .js-plotly-plot')].map(
  (el) => [el.layout.title.text, el.layout.yaxis.title.text])"""


def point(ts: float, metric: str, value: float, **tags: str) -> dict:
    return {"ts": ts, "node": "node-1", "agent": "agent-1", "metric": metric, "value": value, "tags": tags}


def llm(now: float) -> list[dict]:
    out = []
    for model, provider, tokens in [("m-large", "acme", 900), ("m-small", "globex", 120)]:
        for i in range(10):
            out.append(point(now - 60 * i - 1, "tokens_total", tokens, model=model, provider=provider))
            out.append(point(now - 60 * i - 1, "llm_call_ms", 800 + 40 * i, provider=provider))
    out += [point(now - 1, "cache_hits_total", 1, tool="web_search", model="m-large") for _ in range(15)]
    out += [point(now - 1, "cache_misses_total", 1, tool="web_search", model="m-large") for _ in range(5)]
    out += [point(now - 1, "errors_total", 1, error=e) for e in ["RateLimited", "RateLimited", "Timeout"]]
    return out


def custom(now: float) -> list[dict]:
    return [point(now - 1, CUSTOM, 100.0 + 10 * i, tool=XSS if i % 2 else "cart") for i in range(12)]


def test_a_custom_metric_arrives_on_a_board_live_and_as_text(live_server_url, celery_worker, clean_tables):
    User.objects.create_user("boarder", password="boarder-password")
    seed_boards()
    Board.load(
        boards.parse(
            {
                "boards": [
                    {
                        "name": "Checkout",
                        "slug": "checkout",
                        "position": 1,
                        "empty_hint": "The checkout service sends checkout_latency_ms.",
                        "panels": [
                            {
                                "title": "Checkout latency p95 by tool",
                                "query": f"metric={CUSTOM}&stat=p95&group=tool&window=5m",
                                "units": "ms",
                                "target": 150,
                            },
                            {"title": "Responses", "query": "metric=agent_response_ms&stat=count&window=5m"},
                        ],
                    }
                ]
            }
        )
    )
    token = ApiToken.issue("browser", ["ingest"])[1]
    sent = llm(time.time())
    post(live_server_url, token, sent)
    wait_until(lambda: stored() == len(sent), what="the LLM points")
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    # No database calls inside this block: Playwright runs an event loop in this thread.
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/boards/checkout/")
        log_in(page, "boarder")
        page.wait_for_selector("body[data-rendered]")
        page.wait_for_selector("#live-status[data-state=live]")
        page.click("header nav .nav-menu summary")  # the boards menu opens
        nav = page.locator("header nav").inner_text()
        empty = page.locator("#panels").inner_text()
        hint_shown = page.locator("#board-empty").is_visible()
        page_hint = page.locator("#board-empty").inner_text()
        empty_titles = page.evaluate(TITLES)
        page.screenshot(path=str(ARTIFACTS / "board-custom-empty.png"), full_page=True)

        post(live_server_url, token, custom(time.time()))
        page.wait_for_function(
            "() => { const el = document.querySelector('#panel-0');"
            " return el && el.data && el.data.filter((t) => t.name !== 'events').length === 3; }",
            timeout=20_000,
        )
        live = page.evaluate(TRACES)
        legend = page.locator("#panel-0").inner_text()
        hint_after = page.locator("#board-empty").is_visible()
        shapes = page.evaluate("() => document.querySelector('#panel-0').layout.shapes.length")
        page.screenshot(path=str(ARTIFACTS / "board-custom-live.png"), full_page=True)

        page.select_option("select[name=window]", "24h")
        page.wait_for_url("**window=24h**")
        page.wait_for_selector("body[data-rendered]")
        subtitle = page.locator("#subtitle").inner_text()
        windows = page.evaluate(TITLES)

        page.goto(f"{live_server_url}/boards/llm/")
        page.wait_for_selector("body[data-rendered]")
        llm_titles = page.evaluate(TITLES)
        llm_traces = page.evaluate(TRACES)
        page.screenshot(path=str(ARTIFACTS / "board-llm.png"), full_page=True)

        page.goto(f"{live_server_url}/boards/beam/")
        page.wait_for_selector("body[data-rendered]")
        beam = page.locator("#board-empty").inner_text()
        page.screenshot(path=str(ARTIFACTS / "board-beam-empty.png"), full_page=True)

        page.goto(f"{live_server_url}/boards/")
        listed = page.locator("#board-list").inner_text()
        page.screenshot(path=str(ARTIFACTS / "boards.png"), full_page=True)
        assert page.evaluate("() => window.__xss") is None
        browser.close()
    assert errors == []

    assert "Boards" in nav and "Checkout" in nav and "LLM providers and cache" in nav
    assert "no data in this window" in empty and hint_shown
    assert "The checkout service sends checkout_latency_ms." in page_hint
    assert empty_titles[0][0].startswith("Checkout latency p95 by tool<br>") and empty_titles[0][1] == "ms"
    names = {name for name, _ in live[0]}
    assert names == {"cart", '&lt;img src=x onerror="window.__xss=1"&gt;', "all"}  # entities: shown as text
    assert XSS in legend  # the tag value, as text
    assert shapes >= 1  # the target line
    assert not hint_after  # a panel has data: the board's hint stands aside
    assert "every panel over the last 24h" in subtitle
    assert all("last 24h" in title for title, _ in windows)
    assert [t.split("<br>")[0] for t, _ in llm_titles][:6] == [
        "Tokens per second by model",
        "Tokens per second by provider",
        "Tokens per second by type (input, output)",
        "Cache hit rate",
        "Cache hit rate by tool",
        "Cache hit rate by model",
    ]
    assert llm_titles[0][1] == "tokens/s"
    assert {name for name, _ in llm_traces[0]} == {"m-large", "m-small", "all"}
    # The hit rate by tool and by model: a line per group, 15 hits in 20 lookups.
    assert "cache_misses_total) by tool per 1m" in llm_titles[4][0]
    for drawn, group in [(llm_traces[4], "web_search"), (llm_traces[5], "m-large")]:
        lines = {name: [v for v in values if v is not None] for name, values in drawn}
        assert lines == {group: [0.75], "all": [0.75]}
    assert "telemetry_metrics_statsd" in beam
    assert "Checkout" in listed and "BEAM runtime" in listed
