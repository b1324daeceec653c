"""What the dashboard's browser tests share: Debian's Chromium driven by Playwright, logging in,
pushing points through the ingest API, and counting what was stored."""

from __future__ import annotations

import gzip

import httpx
import orjson
from django.db import connection

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
XSS = '<img src=x onerror="window.__xss=1">'


def post(url: str, token: str, body: list[dict]) -> None:
    r = httpx.post(
        f"{url}/api/v1/ingest",
        content=gzip.compress(orjson.dumps({"points": body})),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert r.status_code == 202, r.text


def open_page(pw, errors: list[str]):
    """A new Chromium page whose script errors land in `errors`."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    return browser, page


def log_in(page, username: str) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"{username}-password")
    page.click("button[type=submit]")


def stored() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics_point")
        return cur.fetchone()[0]
