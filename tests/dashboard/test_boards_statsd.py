"""The BEAM board fills from real StatsD: the gauges Elixir's telemetry_poller measures, sent
as telemetry_metrics_statsd sends them (standard formatter, last_value -> `|g`), over UDP to
the node collector, through the real server and worker, found on the board's data."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import sync_playwright

from perfdash.api.models import ApiToken
from perfdash.dashboard import boards
from perfdash.dashboard.models import Board
from tests.collectors.test_agent import start_agent, stop_agent, stored_points
from tests.conftest import wait_until
from tests.dashboard.browser import ARTIFACTS, CHROMIUM, log_in, open_page

SEEDED = importlib.import_module("perfdash.dashboard.migrations.0002_seed_boards").SEEDED
# What `last_value("vm.memory.total", unit: :byte)` and the others send, one datagram each.
POLLER = {
    "vm.memory.total": 61_234_567,
    "vm.memory.processes": 12_345_678,
    "vm.memory.binary": 1_234_567,
    "vm.memory.ets": 2_345_678,
    "vm.total_run_queue_lengths.total": 3,
    "vm.total_run_queue_lengths.cpu": 2,
    "vm.total_run_queue_lengths.io": 1,
    "vm.system_counts.process_count": 412,
    "vm.system_counts.atom_count": 19_876,
    "vm.system_counts.port_count": 17,
}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_telemetry_poller_gauges_over_statsd_fill_the_beam_board(
    live_server_url, celery_worker, clean_tables, tmp_path
):
    Board.load(boards.parse(SEEDED))
    token = ApiToken.issue("node-agent", ["ingest"])[1]
    node = "beam-node-1"  # a node of its own: the session's worker caches series ids
    agent, statsd_port, _ = start_agent(tmp_path, live_server_url, token, node)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for name, value in POLLER.items():
            udp.sendto(f"{name}:{value}|g".encode(), ("127.0.0.1", statsd_port))
    output = stop_agent(agent)
    assert "10 StatsD points" in output
    wait_until(lambda: stored_points() >= len(POLLER), what="the poller's gauges")

    data = Board.data("beam")
    shown = {}
    for panel in data["panels"]:
        [row] = [r for r in panel["data"]["rows"] if r["name"] == node]
        shown[panel["title"]] = row["values"]["max"]
    assert shown == {
        "VM memory: total": 61_234_567,
        "VM memory: processes": 12_345_678,
        "VM memory: binaries": 1_234_567,
        "VM memory: ETS": 2_345_678,
        "Run queue length: total": 3,
        "Run queue length: CPU schedulers": 2,
        "Run queue length: IO schedulers": 1,
        "Processes": 412,
        "Atoms": 19_876,
        "Ports": 17,
    }

    if not Path(CHROMIUM).exists():
        return
    User.objects.create_user("elixir", password="elixir-password")
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:  # the board as a person sees it (no database calls in here)
        browser, page = open_page(pw, errors)
        page.goto(f"{live_server_url}/login/?next=/boards/beam/")
        log_in(page, "elixir")
        page.wait_for_selector("body[data-rendered]")
        hint = page.locator("#board-empty").is_visible()
        ticks = page.evaluate("() => document.querySelector('#panel-0').layout.yaxis.tickformat")
        page.screenshot(path=str(ARTIFACTS / "board-beam-statsd.png"), full_page=True)
        browser.close()
    assert errors == [] and not hint and ticks == "~s"
