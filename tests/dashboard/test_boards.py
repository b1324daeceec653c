"""Boards on the real database: the seeded boards, a board's page and data (each panel the
explorer's data for its query, the board's window for all), the navigation bar, the admin,
and export -> JSON -> import (idempotent, a bad panel named, nothing half loaded)."""

from __future__ import annotations

import importlib
import io
import json
import time
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from perfdash.api.models import ApiToken
from perfdash.dashboard import board_files, boards
from perfdash.dashboard.models import Board, Panel
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch

SCRIPT = '<script>alert("x")</script>'
SEED_BOARDS = importlib.import_module("perfdash.dashboard.migrations.0002_seed_boards")
LLM_BY_TYPE = importlib.import_module("perfdash.dashboard.migrations.0004_llm_board_by_type")


def seed_boards() -> list[Board]:
    """The boards as the migrations leave them (a transactional test elsewhere may have flushed
    them): the LLM and BEAM boards, then the LLM board's panels of 0004."""
    from django.apps import apps

    SEED_BOARDS.seed(apps, None)
    LLM_BY_TYPE.forward(apps, None)
    return list(Board.objects.filter(slug__in=["llm", "beam"]))


@pytest.fixture
def seeded(db) -> list[Board]:
    return seed_boards()


@pytest.fixture
def staff(client, db):
    client.force_login(User.objects.create_user("staff", password="x" * 12, is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def llm_fleet(db) -> None:
    """Tokens of two models and a script-named one, and of each type; cache hits and misses
    (web_search on m-large 14 of 19, the calculator on m-small once), errors, LLM calls."""
    token = ApiToken.issue("t", ["ingest"])[0]
    now = time.time()
    series = [
        ("tokens_total", "node-1", "agent-1", '{"model":"m-large","provider":"acme"}'),
        ("tokens_total", "node-1", "agent-2", '{"model":"m-small","provider":"acme"}'),
        ("tokens_total", "node-2", "agent-3", json.dumps({"model": SCRIPT})),
        ("cache_hits_total", "node-1", "agent-1", '{"model":"m-large","tool":"web_search"}'),
        ("cache_misses_total", "node-1", "agent-1", '{"model":"m-large","tool":"web_search"}'),
        ("errors_total", "node-1", "agent-1", '{"error":"Timeout"}'),
        ("llm_call_ms", "node-1", "agent-1", '{"provider":"acme","model":"m-large"}'),
        ("cache_hits_total", "node-1", "agent-2", '{"model":"m-small","tool":"calculator"}'),
        ("tokens_total", "node-1", "agent-1", '{"model":"m-large","type":"input"}'),
        ("tokens_total", "node-1", "agent-1", '{"model":"m-large","type":"output"}'),
    ]
    counts = [10, 5, 2, 14, 5, 3, 20, 1, 4, 4]
    values = [600.0, 60.0, 10.0, 1.0, 1.0, 1.0, 900.0, 1.0, 500.0, 100.0]
    idx = np.repeat(np.arange(len(series), dtype=np.int32), counts)
    IngestedBatch.store(
        token.id, Batch("b", series, idx, np.full(len(idx), now - 30), np.repeat(values, counts)), now=now
    )


def panel(data: dict, title: str) -> dict:
    return next(p for p in data["panels"] if p["title"] == title)


def test_boards_need_a_login(client, seeded):
    for path in ["/boards/", "/boards/llm/", "/data/board/llm"]:
        r = client.get(path)
        assert r.status_code == 302 and r["Location"].startswith("/login/")


def test_the_migration_seeds_the_llm_and_beam_boards_with_valid_queries(seeded):
    assert [b.slug for b in Board.objects.exclude(slug="perfdash")] == ["llm", "beam"]
    beam = Board.objects.get(slug="beam")
    assert [p.query.split("&")[0] for p in beam.panels.all()] == [
        "metric=vm_memory_total",
        "metric=vm_memory_processes",
        "metric=vm_memory_binary",
        "metric=vm_memory_ets",
        "metric=vm_total_run_queue_lengths_total",
        "metric=vm_total_run_queue_lengths_cpu",
        "metric=vm_total_run_queue_lengths_io",
        "metric=vm_system_counts_process_count",
        "metric=vm_system_counts_atom_count",
        "metric=vm_system_counts_port_count",
    ]
    for p in Panel.objects.all():
        boards.check_query(p.query)  # every seeded query is one the explorer takes
    assert "telemetry_metrics_statsd" in beam.empty_hint


def test_the_llm_board_has_tokens_by_type_and_the_hit_rate_by_tool_and_model(seeded):
    llm = Board.objects.get(slug="llm")
    assert [(p.title, p.query) for p in llm.panels.all()] == [
        ("Tokens per second by model", "metric=tokens_total&stat=rate&group=model&window=1h"),
        ("Tokens per second by provider", "metric=tokens_total&stat=rate&group=provider&window=1h"),
        ("Tokens per second by type (input, output)", "metric=tokens_total&stat=rate&group=type&window=1h"),
        ("Cache hit rate", "ratio=hit_rate&window=1h"),
        ("Cache hit rate by tool", "ratio=hit_rate&group=tool&window=1h"),
        ("Cache hit rate by model", "ratio=hit_rate&group=model&window=1h"),
        ("Errors per second by error type", "metric=errors_total&stat=rate&group=error&window=1h"),
        ("LLM call p95 by provider", "metric=llm_call_ms&stat=p95&group=provider&window=1h"),
        ("LLM time to first token", "metric=llm_time_to_first_token_ms&stat=p50&stat=p95&window=1h"),
    ]
    for p in llm.panels.all():
        boards.check_query(p.query)


def test_the_llm_board_migration_goes_back_to_the_first_panels(seeded):
    from django.apps import apps

    LLM_BY_TYPE.backward(apps, None)
    first = next(b for b in SEED_BOARDS.SEEDED["boards"] if b["slug"] == "llm")
    assert [p.query for p in Board.objects.get(slug="llm").panels.all()] == [
        p["query"] for p in first["panels"]
    ]
    Board.objects.filter(slug="llm").delete()
    LLM_BY_TYPE.forward(apps, None)  # a board staff deleted is not brought back
    assert not Board.objects.filter(slug="llm").exists()


def test_the_navigation_links_the_list_and_the_first_boards_as_text(viewer, seeded):
    Board.objects.create(name=SCRIPT, slug="xss", position=0)
    html = viewer.get("/explore/").content.decode()
    assert "<summary>Boards</summary>" in html and '<a href="/boards/">All boards…</a>' in html
    assert 'href="/boards/xss/">&lt;script&gt;' in html and SCRIPT not in html
    assert 'href="/boards/llm/"' in html and 'href="/boards/beam/"' in html
    listed = viewer.get("/boards/").content.decode()
    assert "LLM providers and cache" in listed and "BEAM runtime" in listed


def test_a_board_draws_each_panel_from_the_explorer(viewer, seeded, llm_fleet):
    page = viewer.get("/boards/llm/")
    assert page.status_code == 200 and b'data-slug="llm"' in page.content
    data = viewer.get("/data/board/llm").json()
    assert data["board"]["name"] == "LLM providers and cache" and data["window"] == ""
    tokens = panel(data, "Tokens per second by model")
    assert tokens["units"] == "tokens/s" and tokens["chart"] == "area"
    assert tokens["explore"].startswith("/explore/?metric=tokens_total&stat=rate")
    rows = {r["name"]: r for r in tokens["data"]["rows"]}
    assert list(rows) == ["m-large", "m-small", SCRIPT, "all"]  # the name is data, shown as text
    assert {line["group"] for line in tokens["data"]["lines"]} == {"m-large", "m-small", SCRIPT, ""}
    # A counter's rate: the sum of its values per second, over the part of the window passed.
    assert rows["m-large"]["values"]["rate"] == pytest.approx((10 * 600 + 4 * 600) / 3600, rel=0.05)
    hit = panel(data, "Cache hit rate")["data"]
    assert hit["rows"][0]["shown"]["ratio"] == "75 %"
    by_tool = panel(data, "Cache hit rate by tool")["data"]
    assert [(r["name"], r["shown"]["ratio"]) for r in by_tool["rows"]] == [
        ("web_search", "73.7 %"),
        ("calculator", "too few lookups (1 < 10)"),
        ("all", "75 %"),
    ]
    by_model = panel(data, "Cache hit rate by model")["data"]
    assert [r["name"] for r in by_model["rows"]] == ["m-large", "m-small", "all"]
    by_type = panel(data, "Tokens per second by type (input, output)")["data"]
    assert [r["name"] for r in by_type["rows"]] == ["input", "output", "all"]
    assert by_type["rows"][0]["values"]["rate"] == pytest.approx(4 * 500 / 3600, rel=0.05)
    errors = panel(data, "Errors per second by error type")["data"]
    assert [r["name"] for r in errors["rows"]] == ["Timeout", "all"]
    ttft = panel(data, "LLM time to first token")["data"]
    assert ttft["seen"] is False and ttft["rows"] == []  # not sent yet: an empty chart, no error
    assert "metrics" not in tokens["data"]


def test_the_boards_window_applies_to_every_panel(viewer, seeded, llm_fleet):
    data = viewer.get("/data/board/llm?window=24h").json()
    assert data["window"] == "24h"
    assert {p["data"]["view"]["window"] for p in data["panels"]} == {"24h"}
    assert {p["data"]["step"] for p in data["panels"]} == {"30m"}  # the explorer's default for 24h
    assert panel(data, "Cache hit rate")["data"]["rows"][0]["shown"]["ratio"] == "75 %"


def test_a_bad_window_or_an_unknown_board_is_said_plainly(viewer, seeded):
    r = viewer.get("/data/board/llm?window=soon")
    assert r.status_code == 400 and r.json()["param"] == "window"
    assert viewer.get("/boards/llm/?window=soon").status_code == 400
    assert viewer.get("/data/board/nope").status_code == 404
    assert viewer.get("/boards/nope/").status_code == 404


def test_a_panel_whose_query_stopped_working_shows_why_and_spoils_no_other(viewer, db):
    board = Board.objects.create(name="Mixed", slug="mixed")
    Panel.objects.create(board=board, position=0, title="fine", query="metric=agent_response_ms")
    Panel.objects.create(board=board, position=1, title="broken", query="metric=x&group=flavour")
    data = viewer.get("/data/board/mixed").json()
    assert "error" not in data["panels"][0] and data["panels"][0]["data"]["title"] == "agent_response_ms"
    assert data["panels"][1]["error"].startswith("group: group must be one of")


def test_export_then_import_into_an_empty_database_gives_the_same_boards(seeded, tmp_path):
    Board.objects.create(name="Custom", slug="custom", description=SCRIPT, position=5).panels.create(
        title="Queue", query="metric=queue_depth&stat=max&window=5m", chart="bar", units="jobs", target=40
    )
    before = [b.spec() for b in Board.objects.all()]
    out = tmp_path / "boards.json"
    call_command("export_boards", "-o", str(out))
    assert json.loads(out.read_text())["format"] == 1
    Board.objects.all().delete()
    assert Panel.objects.count() == 0
    call_command("import_boards", str(out), stdout=io.StringIO())
    assert [b.spec() for b in Board.objects.all()] == before
    call_command("import_boards", str(out), stdout=io.StringIO())  # again: nothing changes
    assert [b.spec() for b in Board.objects.all()] == before
    assert Board.objects.count() == len(before) and Panel.objects.count() == sum(
        len(s.panels) for s in before
    )


def test_an_import_updates_a_board_by_its_slug(seeded, tmp_path):
    boards_before = Board.objects.count()
    data = boards.export([Board.objects.get(slug="beam").spec()])
    data["boards"][0]["name"] = "BEAM"
    data["boards"][0]["panels"] = data["boards"][0]["panels"][:2]
    path = tmp_path / "beam.json"
    path.write_text(json.dumps(data))
    call_command("import_boards", str(path), stdout=io.StringIO())
    beam = Board.objects.get(slug="beam")
    assert beam.name == "BEAM" and beam.panels.count() == 2 and Board.objects.count() == boards_before


def test_a_bad_panel_query_on_import_names_the_panel_and_loads_nothing(db, tmp_path):
    data = {
        "format": 1,
        "boards": [
            {"name": "Good", "panels": [{"title": "ok", "query": "metric=agent_response_ms"}]},
            {
                "name": "Bad",
                "panels": [
                    {"title": "first", "query": "metric=agent_response_ms&stat=p95"},
                    {"title": "Latency by colour", "query": "metric=agent_response_ms&stat=p97"},
                ],
            },
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CommandError) as caught:
        call_command("import_boards", str(path))
    message = str(caught.value)
    assert "board 'Bad', panel 2 ('Latency by colour')" in message
    assert "query 'metric=agent_response_ms&stat=p97': stat: stat must be one of" in message
    assert not Board.objects.filter(name__in=["Good", "Bad"]).exists()  # not even the good board


def one(panel: dict) -> dict:
    return {"boards": [{"name": "B", "panels": [panel]}]}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ([], 'a JSON object with a list "boards"'),
        (one({"title": "t", "query": "window=1h&page=x"}), "page"),
        (one({"title": "t", "query": "bogus=1"}), "unknown parameter"),
        (one({"query": "metric=a"}), "title must be a non-empty text"),
        (one({"title": "t", "query": "metric=a", "chart": "pie"}), "chart must be one of"),
        (one({"title": "t", "query": "metric=a", "target": "9"}), "target must be a number"),
        (one({"title": "t", "query": "metric=a", "size": 2}), "unknown field 'size'"),
        ({"boards": [{"name": "B", "colour": 1}]}, "unknown field 'colour'"),
        ({"boards": [{"name": "B", "slug": "Not A Slug"}]}, "slug"),
        ({"boards": [{"name": "A", "slug": "x"}, {"name": "B", "slug": "x"}]}, "slugs repeat"),
        ({"format": 2, "boards": []}, "format 2"),
    ],
)
def test_a_bad_board_file_is_refused_with_a_clear_error(data, says):
    with pytest.raises(boards.BoardError) as caught:
        boards.parse(data)
    assert says in str(caught.value)


def test_import_reads_standard_input_with_a_dash(db, monkeypatch):
    data = {"boards": [{"name": "Piped", "panels": [{"title": "q", "query": "metric=queue_depth"}]}]}
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=io.BytesIO(json.dumps(data).encode())))
    out = io.StringIO()
    call_command("import_boards", "-", stdout=out)
    assert out.getvalue() == "piped: Piped, 1 panels\n"
    assert Board.objects.get(slug="piped").panels.get().query == "metric=queue_depth"


def test_import_of_a_missing_or_garbled_file_is_an_error_not_a_traceback(db, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_boards", str(tmp_path / "none.json"))
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(CommandError, match="not JSON"):
        call_command("import_boards", str(tmp_path / "x.json"))


def test_staff_edit_boards_in_the_admin_and_a_bad_query_is_a_form_error(staff, seeded):
    board = Board.objects.get(slug="llm")
    assert staff.get("/admin/dashboard/board/").status_code == 200
    assert staff.get(f"/admin/dashboard/board/{board.pk}/change/").status_code == 200
    form = {
        "name": "Mine",
        "slug": "mine",
        "description": "",
        "empty_hint": "",
        "position": "1",
        "panels-TOTAL_FORMS": "1",
        "panels-INITIAL_FORMS": "0",
        "panels-MIN_NUM_FORMS": "0",
        "panels-MAX_NUM_FORMS": "1000",
        "panels-0-position": "0",
        "panels-0-title": "Bad",
        "panels-0-query": "metric=agent_response_ms&stat=p97",
        "panels-0-chart": "line",
        "panels-0-units": "",
        "panels-0-target": "",
    }
    r = staff.post("/admin/dashboard/board/add/", form)
    assert r.status_code == 200 and b"stat must be one of" in r.content
    assert not Board.objects.filter(slug="mine").exists()
    form["panels-0-query"] = "metric=agent_response_ms&stat=p95"
    r = staff.post("/admin/dashboard/board/add/", form)
    assert r.status_code == 302 and Board.objects.get(slug="mine").panels.get().title == "Bad"


def test_the_admin_exports_the_selected_boards_as_json(staff, seeded):
    ids = [str(b.pk) for b in Board.objects.all()]
    r = staff.post("/admin/dashboard/board/", {"action": "export_json", "_selected_action": ids})
    assert r["Content-Type"] == "application/json"
    assert boards.parse(json.loads(r.content)) == [b.spec() for b in Board.objects.all()]


def upload(staff, data, name: str = "boards.json"):
    text = data if isinstance(data, bytes) else json.dumps(data).encode()
    return staff.post("/admin/dashboard/board/import/", {"file": SimpleUploadedFile(name, text)}, follow=True)


def said(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_admin_imports_a_board_file_by_slug_as_the_command_does(staff, seeded):
    listed = staff.get("/admin/dashboard/board/").content.decode()
    assert 'href="/admin/dashboard/board/import/"' in listed and "Import boards" in listed
    form = staff.get("/admin/dashboard/board/import/")
    assert form.status_code == 200 and b'type="file" name="file"' in form.content
    data = boards.export([Board.objects.get(slug="beam").spec()])
    data["boards"][0]["name"] = "BEAM, imported"
    data["boards"][0]["panels"] = data["boards"][0]["panels"][:2]
    data["boards"].append(
        {"name": SCRIPT, "slug": "new", "panels": [{"title": "q", "query": "metric=queue"}]}
    )
    before = Board.objects.count()
    r = upload(staff, data)
    assert r.redirect_chain == [("/admin/dashboard/board/", 302)]
    assert said(r) == [f"Imported from boards.json: BEAM, imported (2 panels), {SCRIPT} (1 panels)."]
    assert SCRIPT.encode() not in r.content  # the message is escaped like any other text
    assert Board.objects.get(slug="beam").panels.count() == 2 and Board.objects.count() == before + 1
    again = upload(staff, data)  # the same file again: nothing changes
    assert Board.objects.count() == before + 1 and Board.objects.get(slug="beam").name == "BEAM, imported"
    assert said(again)[0].startswith("Imported from boards.json: BEAM, imported (2 panels)")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (
            one({"title": "Latency by colour", "query": "metric=agent_response_ms&stat=p97"}),
            "board 'B', panel 1 ('Latency by colour'): query 'metric=agent_response_ms&stat=p97': stat: "
            "stat must be one of",
        ),
        (b"{", "not JSON"),
        (b'{"boards": [{"name": "\xff"}]}', "not UTF-8 text"),
        (
            b'{"boards": [{"name": "B", "panels": [{"title": "t", "query": "metric=a", "target": NaN}]}]}',
            "NaN",
        ),
        ({"boards": [{"name": "LLM providers and cache", "slug": "llm-2"}]}, "the board 'llm' has that name"),
        ({"boards": [{"name": "A", "slug": "a"}, {"name": "A", "slug": "b"}]}, "board names repeat"),
        ({"boards": [{"name": "B", "position": 2**31}]}, "position must be a whole number from 0 to"),
    ],
    ids=["bad-panel", "not-json", "not-utf8", "nan", "name-taken", "names-repeat", "position"],
)
def test_a_bad_board_file_in_the_admin_is_a_message_and_imports_nothing(staff, seeded, data, says):
    panels = Panel.objects.count()
    r = upload(staff, data, "mine.json")
    assert r.status_code == 400 and r.redirect_chain == []
    [message] = said(r)
    assert message.startswith("Nothing was imported from mine.json: ") and says in message
    assert Panel.objects.count() == panels and not Board.objects.filter(slug__in=["b", "llm-2", "a"]).exists()


def test_an_import_without_a_file_or_too_large_a_file_is_a_message(staff, seeded, monkeypatch):
    r = staff.post("/admin/dashboard/board/import/", {}, follow=True)
    assert r.status_code == 400 and said(r) == ["Choose a board file (JSON, as export_boards writes it)."]
    monkeypatch.setattr(board_files, "MAX_BYTES", 10)
    r = upload(staff, {"boards": []})
    assert r.status_code == 400 and "at most 0 KiB" in said(r)[0]


def test_only_staff_who_may_add_and_change_boards_import_them(client, viewer, db):
    clerk = User.objects.create_user("clerk", password="x" * 12, is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="change_board"))
    client.force_login(clerk)
    assert client.get("/admin/dashboard/board/import/").status_code == 403
    assert viewer.get("/admin/dashboard/board/import/", follow=True).status_code == 403


def test_a_viewer_cannot_edit_boards(viewer, seeded):
    assert viewer.get("/admin/dashboard/board/", follow=True).status_code == 403


def test_the_perfdash_board_reads_the_health_metrics_with_valid_queries(db):
    from django.apps import apps

    importlib.import_module("perfdash.dashboard.migrations.0003_perfdash_board").seed(apps, None)
    board = Board.objects.get(slug="perfdash")
    panels = list(board.panels.all())
    assert len(panels) == 12 and all("metric=perfdash_" in p.query for p in panels)
    for p in panels:
        boards.check_query(p.query)
    assert next(p for p in panels if "oldest_batch" in p.query).target == 60


def test_a_board_marks_the_events_of_its_first_panel_that_has_any(db):
    from tests.dashboard.test_events import made

    made("v2 on node-2", timedelta(minutes=10), {"node": "node-2"})
    made("v1, a week ago", timedelta(days=6))

    def marked(*queries: str) -> list[str]:
        spec = boards.BoardSpec("E", "e", panels=tuple(boards.PanelSpec(q, q) for q in queries))
        return [e["title"] for e in boards.build(spec, now=time.time())["events"]]

    assert marked("metric=m&node=node-1&window=1h", "metric=m&node=node-2&window=7d") == [
        "v2 on node-2",
        "v1, a week ago",
    ]
    assert marked("metric=m&node=node-2&window=1h", "metric=m&window=7d") == ["v2 on node-2"]
    assert marked("metric=m&node=node-1&window=1h") == []
