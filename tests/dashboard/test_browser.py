"""In Debian's Chromium, driven by Playwright: log in, see the charts, watch new points arrive
without a reload, see an agent name with a script in it shown as text, see a failed first
load said and retried, and see firing alerts in their rules' units. Screenshots of each page
land in test-artifacts/."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import httpx
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import sync_playwright

from perfdash.alerts.models import AlertRule, AlertState
from perfdash.api.models import ApiToken
from perfdash.events.models import Event
from tests.compare.conftest import DEPLOY, fleet, tools  # noqa: F401 (fixtures)
from tests.conftest import wait_until
from tests.dashboard.browser import ARTIFACTS, CHROMIUM, XSS, log_in, open_page, post, stored

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LATENCY_METRICS = ["agent_response_ms", "tool_execution_ms", "llm_call_ms", "memory_op_ms"]


def points(n: int, agent: str = "agent-1", value: float = 800.0) -> list[dict]:
    now = time.time()
    out = [
        {"ts": now - 1, "node": "node-1", "agent": agent, "metric": "agent_response_ms", "value": value + i}
        for i in range(n)
    ]
    out.append(
        {"ts": now - 1, "node": "node-1", "agent": XSS, "metric": "agent_memory_bytes", "value": 250e6}
    )
    out.append({"ts": now - 1, "node": "node-1", "agent": "collector", "metric": "active_agents", "value": 2})
    return out


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run")
def test_a_viewer_sees_the_fleet_live_and_names_as_text(live_server_url, celery_worker, clean_tables):
    User.objects.create_user("viewer", password="viewer-password")
    token = ApiToken.issue("browser", ["ingest"])[1]
    post(live_server_url, token, points(40))
    wait_until(lambda: stored() == 42, what="the first points")
    ARTIFACTS.mkdir(exist_ok=True)

    # No database calls inside this block: Playwright runs an event loop in this thread.
    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/")
        assert "/login/" in page.url
        log_in(page, "viewer")
        page.wait_for_selector("body[data-rendered]")
        assert page.locator(".js-plotly-plot").count() >= 10
        page.wait_for_selector("#live-status[data-state=live]")
        count = "() => document.getElementById('chart-agent_response_ms-hist').data[0].name"
        assert page.evaluate(count) == "agent_response_ms (n=40)"
        page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

        post(live_server_url, token, points(25, value=3000))  # no reload from here on
        page.wait_for_function(f"{count} === 'agent_response_ms (n=65)'", timeout=15_000)
        assert page.evaluate("window.__xss") is None
        svg_text = page.locator("#chart-memory-top").inner_text()
        assert XSS in svg_text  # the name is shown, as text

        for path, name in [("/nodes/node-1/", "node"), ("/agents/agent-1/", "agent"), ("/tools/", "tools")]:
            page.goto(f"{live_server_url}{path}?window=5m")
            page.wait_for_selector("body[data-rendered]")
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        page.goto(f"{live_server_url}/agents/{httpx.URL(XSS).raw_path.decode()}/")
        page.wait_for_selector("body[data-rendered]")
        assert XSS in page.locator("h1").inner_text()
        assert page.evaluate("window.__xss") is None
        browser.close()
    assert errors == []


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run")
def test_the_capacity_page_fits_on_first_visit_and_draws_its_charts(live_server_url, clean_tables, tmp_path):
    from tests.conftest import start_worker
    from tests.forecasting.conftest import Fleet

    User.objects.create_user("planner", password="planner-password")
    history = Fleet(ApiToken.issue("history", ["ingest"])[0].id)
    for node, start in [("node-1", 500), ("node-2", 300)]:
        history.hourly(
            "active_agents", node, "collector", 21 * 24, lambda ago, s=start: s + (21 * 24 - ago) / 2
        )
        history.hourly("agent_memory_bytes", node, "agent-1", 21 * 24, lambda ago: 60e6 + 0 * ago)
    history.store()
    worker = start_worker(tmp_path, "forecast", queues="forecast")
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    try:
        with sync_playwright() as pw:
            browser, page = open_page(pw, errors)
            page.goto(f"{live_server_url}/login/?next=/capacity/")
            log_in(page, "planner")
            # No forecasts yet: the visit queues a refit, and the page redraws when it lands.
            # Five targets: two charts each for the per-node ones, one for each of the others.
            # A function, not an expression: a Content-Security-Policy without 'unsafe-eval'
            # refuses expressions.
            page.wait_for_function(
                "() => document.querySelectorAll('.js-plotly-plot').length === 7", timeout=60_000
            )
            assert page.locator("#fitted").inner_text().startswith("fitted")
            outlook = page.locator("#target-node_agents .outlook").inner_text()
            assert outlook.startswith("node-1 reaches 1,000 agents in") and "Recommended:" in outlook
            bands = "document.getElementById('chart-node_agents-1').data.map((t) => t.name)"
            assert {"history", "80 % interval", "95 % interval", "forecast"} <= set(page.evaluate(bands))
            page.screenshot(path=str(ARTIFACTS / "capacity.png"), full_page=True)

            page.fill("#growth", "20")
            page.click("#whatif button[type=submit]")
            page.wait_for_selector("body[data-rendered]")
            assert "growth=20" in page.url
            page.screenshot(path=str(ARTIFACTS / "capacity-what-if.png"), full_page=True)
            browser.close()
    finally:
        worker.kill()
    assert errors == []


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run")
def test_a_failed_first_load_is_shown_and_retried_and_the_socket_waits_for_the_data(live_server_url):
    User.objects.create_user("viewer", password="viewer-password")
    ARTIFACTS.mkdir(exist_ok=True)
    answer = {"next": "500"}  # what the page's next data request gets
    seen: list[str] = []  # data requests and the socket, in the order they happened

    def data(route) -> None:
        seen.append(f"data {answer['next']}")
        if answer["next"] == "500":
            route.fulfill(status=500, content_type="text/plain", body="database is away")
        elif answer["next"] == "abort":
            route.abort("connectionrefused")
        else:
            route.continue_()

    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.route(re.compile(r"/data/overview\?"), data)
        page.on("websocket", lambda socket: seen.append("socket"))
        page.goto(f"{live_server_url}/login/?next=/")
        log_in(page, "viewer")

        banner = page.locator("#load-error")
        banner.filter(has_text="Retrying in").wait_for(timeout=15_000)
        assert "Could not load the overview data (GET /data/overview): HTTP 500" in banner.inner_text()
        assert banner.is_visible()
        assert page.locator("#live-status").get_attribute("data-state") == "error"
        page.screenshot(path=str(ARTIFACTS / "load-error.png"))

        answer["next"] = "abort"
        banner.filter(has_text="network error").wait_for(timeout=15_000)
        assert "Retrying in" in banner.inner_text()

        answer["next"] = "ok"
        page.wait_for_selector("body[data-rendered]", timeout=60_000)
        page.wait_for_selector("#live-status[data-state=live]")
        assert banner.count() == 0
        assert page.locator(".js-plotly-plot").count() >= 3
        browser.close()
    assert errors == []
    first_ok = seen.index("data ok")
    assert {"data 500", "data abort"} <= set(seen[:first_ok]) and "socket" not in seen[:first_ok]
    assert seen[first_ok + 1 :] == ["socket"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run")
def test_firing_alerts_show_their_value_and_threshold_in_the_units_of_the_rule(live_server_url):
    User.objects.create_user("viewer", password="viewer-password")

    def firing(name: str, metric: str, statistic: str, threshold: float, value: float, **kw) -> None:
        rule = AlertRule.objects.create(
            name=name, metric=metric, statistic=statistic, threshold=threshold, **kw
        )
        AlertState.objects.create(
            rule=rule, subject=kw.get("node", ""), state=AlertState.State.FIRING, value=value
        )

    firing("Memory", "agent_memory_bytes", "max", 1e8, 1.2e8)
    firing("Slow", "agent_response_ms", "p95", 2000.0, 3500.0)
    firing("Busy", "agent_response_ms", "count", 500.0, 640.0)  # points, not milliseconds
    firing("Odd one", "agent_response_ms", "p95", 5.0, 6.23456, kind="outlier", scope="node")  # MADs

    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/")
        log_in(page, "viewer")
        page.wait_for_selector("#alerts[data-firing='4']")
        rows = page.locator("#alerts tbody tr")
        # rule, where, value, threshold
        shown = [rows.nth(i).locator("td").all_inner_texts()[1:5] for i in range(rows.count())]
        browser.close()
    assert errors == []
    # As the admin shows them (perfdash/alerts/quantities.py).
    assert shown == [
        ["Memory", "fleet", "120 MB", "100 MB"],
        ["Slow", "fleet", "3.5 s", "2 s"],
        ["Busy", "fleet", "640", "500"],
        ["Odd one", "fleet", "6.235 MADs", "5 MADs"],
    ]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run")
def test_an_event_posted_through_the_api_is_a_marker_whose_hover_shows_its_title(live_server_url):
    User.objects.create_user("viewer", password="viewer-password")
    token = ApiToken.issue("deployer", ["ingest"])[1]
    title = f"v1.3.0 {XSS}"
    r = httpx.post(
        f"{live_server_url}/api/v1/events",
        json={"kind": "deploy", "title": title, "tags": {"version": "1.3.0"}, "ts": time.time() - 120},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    # As deploy verification stores it (perfdash/compare/verify.py), shortened.
    response = {"verdict": "slower", "change": "p95 2.31 s vs 1.98 s, +17 % (95 % interval +12 % to +22 %)"}
    Event.objects.filter(id=r.json()["id"]).update(
        verification={
            "verdict": "slower",
            "against": "1.2.0",
            "how": "before/after",
            "metrics": {"agent_response_ms": response},
        }
    )
    ARTIFACTS.mkdir(exist_ok=True)
    chart = "chart-agent_response_ms-pct"

    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/")
        log_in(page, "viewer")
        page.wait_for_selector("body[data-rendered]")
        # Every time chart has the marker (a dotted line), no other chart has.
        marked = page.evaluate(
            """() => [...document.querySelectorAll('.js-plotly-plot')].filter(
                 (el) => el.data.some((t) => t.name === 'events')).map((el) => el.id).sort()"""
        )
        assert marked == sorted(f"chart-{m}-pct" for m in LATENCY_METRICS)
        # Each latency panel's title opens the same query in the explorer.
        heading = page.evaluate(f"() => document.getElementById('{chart}').layout.title.text")
        explored = "/explore/?metric=agent_response_ms&amp;stat=p50&amp;stat=p95&amp;stat=p99&amp;window=1h"
        assert explored in heading
        # Hover the middle of the line: where Plotly put it, in the viewport's pixels.
        page.locator(f"#{chart}").scroll_into_view_if_needed()
        x, y = page.evaluate(
            f"""() => {{
              const el = document.getElementById('{chart}');
              const layout = el._fullLayout;
              const trace = el.data.find((t) => t.name === 'events');
              const box = el.getBoundingClientRect();
              return [box.left + layout._size.l + layout.xaxis.d2p(trace.x[trace.x.length - 1]),
                      box.top + layout._size.t + layout.yaxis9.d2p(0.5)];
            }}"""
        )
        page.mouse.move(x, y)
        hover = page.locator(f"#{chart} .hovertext")
        hover.wait_for(timeout=5_000)
        text = hover.text_content()  # SVG: one text element per line
        page.screenshot(path=str(ARTIFACTS / "event-marker.png"))
        assert page.evaluate("() => window.__xss") is None
        browser.close()
    assert errors == []
    assert title in text and "deploy" in text and "version=1.3.0" in text
    assert "verified against 1.2.0, before/after: slower" in text
    assert "agent_response_ms: slower · p95 2.31 s vs 1.98 s, +17 % (95 % interval +12 % to +22 %)" in text
    # A click on the marker opens the comparison of the hour before it with the hour after.
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/")
        log_in(page, "viewer")
        page.wait_for_selector("body[data-rendered]")
        page.locator(f"#{chart}").scroll_into_view_if_needed()
        page.mouse.click(x, y)
        page.wait_for_url("**/compare/**")
        asked = parse_qs(urlparse(page.url).query)
        page.wait_for_selector("body[data-rendered]")
        said = page.locator("#verdict").text_content()
        browser.close()
    ts = int(r.json()["ts"]) if "ts" in r.json() else None
    assert asked["a.to"] == asked["b.from"] and asked["window"] == ["1h"], asked
    assert ts is None or asked["a.to"] == [str(ts)]
    assert "not enough data" in said.lower() or "cannot compare" in said.lower(), said


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run")
def test_the_compare_page_shows_the_verdict_both_distributions_the_table_and_the_breakdown(
    live_server_url,
    fleet,  # noqa: F811 (the fixture)
    tools,  # noqa: F811
):
    User.objects.create_user("viewer", password="viewer-password")
    ARTIFACTS.mkdir(exist_ok=True)
    versions = "metric=agent_response_ms&window=1h&a.tag.version=1.2.0&b.tag.version=1.3.0"
    around = f"metric=tool_execution_ms&window=20m&a.to={int(DEPLOY)}&b.from={int(DEPLOY) + 60}"
    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/compare/%3F{quote(versions)}")
        log_in(page, "viewer")
        page.wait_for_selector("body[data-rendered]")
        said = page.locator("#verdict").text_content()
        chart = page.evaluate(
            """() => { const el = document.getElementById('chart-histograms');
                       return [el.data.map((t) => t.name), el._fullLayout.xaxis.type,
                               el._fullLayout.xaxis.title.text, el._fullLayout.yaxis.title.text]; }"""
        )
        rows = page.locator("#stats tbody tr").all_inner_texts()
        tagged = page.locator("#by-tool").text_content()
        page.screenshot(path=str(ARTIFACTS / "compare-versions.png"), full_page=True)
        # The form keeps the URL's cohorts; changing one and submitting asks for the new pair.
        assert page.locator("fieldset[data-cohort=b] [name=value]").input_value() == "1.3.0"
        page.fill("fieldset[data-cohort=b] [name=value]", "1.2.0")
        page.fill("fieldset[data-cohort=b] [name=node]", "node-1")
        page.click("#compare-form button[type=submit]")
        page.wait_for_url("**b.node=node-1**")
        page.wait_for_selector("body[data-rendered]")
        same_version = page.locator("#verdict").text_content()
        page.goto(f"{live_server_url}/compare/?{around}")
        page.wait_for_selector("body[data-rendered]")
        by_tool = page.locator("#by-tool tbody tr").all_inner_texts()
        page.screenshot(path=str(ARTIFACTS / "compare-deploy.png"), full_page=True)
        browser.close()
    assert errors == []
    assert said.startswith("version 1.3.0 is slower than version 1.2.0: p95 ")
    names, axis, x_title, y_title = chart
    assert [n.split(" (n=")[0] for n in names] == ["a: version 1.2.0", "b: version 1.3.0"]
    assert axis == "log" and "ms, log scale" in x_title and "share of points" in y_title
    assert [r.split("\t")[0] for r in rows] == ["p50", "p90", "p95", "p99", "mean"]
    assert all("[" in r and "slower" in r for r in rows[:3])
    assert "needs cohorts that do not filter on a tag" in tagged
    assert "node node-1" in same_version
    assert [r.split("\t")[0] for r in by_tool] == ["search", "fetch", "rare"]
    assert by_tool[0].endswith("slower") and by_tool[2].endswith("not enough data")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by .ci/run")
def test_the_header_turns_amber_while_ingest_is_more_than_a_minute_behind(live_server_url):
    from datetime import timedelta

    from django.utils import timezone

    from perfdash.ingest.models import PendingBatch

    User.objects.create_user("viewer", password="viewer-password")
    token = ApiToken.issue("late", ["ingest"])[0]
    # A batch accepted 90 s ago that no worker has stored (no wake-up was sent for it).
    late = PendingBatch.objects.create(token=token, batch_id="late", points=1, payload=b"")
    PendingBatch.objects.filter(id=late.id).update(accepted_at=timezone.now() - timedelta(seconds=90))
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/tools/")
        log_in(page, "viewer")
        page.wait_for_selector("#live-status[data-behind]", timeout=10_000)
        shown = page.locator("#live-status").evaluate(
            "(el) => [getComputedStyle(el).backgroundColor, el.title]"
        )
        page.screenshot(path=str(ARTIFACTS / "header-behind.png"))
        browser.close()
    assert errors == []
    assert shown[0] == "rgb(241, 162, 8)" and "came in 9" in shown[1]
