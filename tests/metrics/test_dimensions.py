"""Dimension tags: `version` and `variant` get rollups like `tool`, the `DIMENSION_TAGS` setting
decides which tags do, and a system check keeps that setting safe."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
from django.core.exceptions import ValidationError

from perfdash.alerts.models import AlertRule
from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics import query, store
from perfdash.metrics.batch import Batch
from perfdash.metrics.dimensions import dimension_tags_are_valid
from perfdash.metrics.models import RollupKey
from tests.conftest import ROOT, server_env

NOW = time.time()


def series(metric: str, node: str, agent: str, **tags: str) -> tuple[str, str, str, str]:
    return (metric, node, agent, orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode())


# A release 1.3.0 running an A/B test (agent-1 on variant a, agent-2 on b) beside an agent
# still on 1.2.0.
FLEET = [
    series("agent_response_ms", "node-1", "agent-1", version="1.3.0", variant="a"),
    series("agent_response_ms", "node-1", "agent-2", version="1.3.0", variant="b"),
    series("agent_response_ms", "node-2", "agent-3", version="1.2.0", variant="a"),
    series("tool_execution_ms", "node-1", "agent-1", tool="web_search", version="1.3.0", region="eu"),
]
POINTS = {0: (10, 100.0), 1: (20, 200.0), 2: (30, 300.0), 3: (5, 50.0)}  # series: (points, value)


def store_fleet() -> None:
    token = ApiToken.issue("fleet", ["ingest"])[0]
    idx = np.concatenate([np.full(n, i, np.int32) for i, (n, _) in POINTS.items()])
    values = np.concatenate([np.full(n, v) for n, v in POINTS.values()])
    IngestedBatch.store(token.id, Batch("b", FLEET, idx, np.full(idx.size, NOW - 10), values), now=NOW)


def rollup_tags() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for key, value in RollupKey.objects.exclude(tag_key="").values_list("tag_key", "tag_value"):
        found.setdefault(key, set()).add(value)
    return found


def stats(client, token: str, filters: str) -> dict:
    r = client.get(f"/api/v1/stats?window=5m&{filters}", HTTP_AUTHORIZATION=f"Bearer {token}")
    return {"status": r.status_code, **r.json()}


# --- rollups per version and per variant ----------------------------------------------------


def test_a_point_tagged_with_a_tool_a_version_and_a_variant_counts_in_twelve_rollups():
    tagged = series("tool_execution_ms", "node-1", "agent-1", tool="t", version="1.3.0", variant="b")
    keys = store.rollup_keys(tagged)
    assert len(keys) == 12
    assert {(k[1], k[2]) for k in keys if k[3:] == ("version", "1.3.0")} == {
        ("", ""),
        ("node-1", ""),
        ("node-1", "agent-1"),
    }


def test_points_with_version_and_variant_tags_are_read_per_version_and_per_variant(client, read_token):
    store_fleet()

    assert rollup_tags() == {"version": {"1.3.0", "1.2.0"}, "variant": {"a", "b"}, "tool": {"web_search"}}
    release = stats(client, read_token, "metric=agent_response_ms&tag.version=1.3.0")
    assert (release["status"], release["count"]) == (200, 30)
    assert release["max"] == 200.0
    assert stats(client, read_token, "metric=agent_response_ms&tag.version=1.2.0")["count"] == 30
    assert stats(client, read_token, "metric=agent_response_ms&tag.variant=a")["count"] == 40
    arm_b = stats(client, read_token, "metric=agent_response_ms&node=node-1&tag.variant=b")
    assert arm_b["count"] == 20 and arm_b["p95"] == pytest.approx(200.0, rel=0.01)
    by_version = query.breakdown("agent_response_ms", 300, "version", now=NOW)
    assert {v: row["count"] for v, row in by_version.items()} == {"1.2.0": 30, "1.3.0": 30}


def test_versions_beyond_the_days_limit_roll_up_under_other(db, settings):
    settings.DIMENSION_MAX_VALUES = 1
    store.resolve([series("agent_response_ms", "node-1", f"agent-{v}", version=v) for v in ("1.0", "1.1")])
    assert rollup_tags() == {"version": {"1.0", "_other"}}


# --- the setting ---------------------------------------------------------------------------


def test_the_setting_decides_which_tags_get_rollups_and_can_filter(client, read_token, settings):
    settings.DIMENSION_TAGS = ("tool", "region")
    store_fleet()

    assert rollup_tags() == {"tool": {"web_search"}, "region": {"eu"}}
    assert stats(client, read_token, "metric=tool_execution_ms&tag.region=eu")["count"] == 5
    refused = stats(client, read_token, "metric=agent_response_ms&tag.version=1.3.0")
    assert refused == {
        "status": 400,
        "error": "only these tags can filter: tool, region",
        "param": "tag.version",
    }
    with pytest.raises(query.QueryError):
        query.breakdown("agent_response_ms", 300, "version", now=NOW)


def test_an_alert_rule_may_watch_any_dimension_tag_and_no_other(settings):
    field = AlertRule._meta.get_field("tag_key")
    assert field.clean("version", None) == "version"
    settings.DIMENSION_TAGS = ("tool",)
    with pytest.raises(ValidationError):
        field.clean("version", None)


def test_changing_the_setting_needs_no_migration(db):
    # A fresh process, so that nothing computed from the setting at import time escapes.
    check = [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run", "alerts", "metrics"]
    run = subprocess.run(check, cwd=ROOT, env=server_env(DIMENSION_TAGS="tool,region"), capture_output=True)
    assert run.returncode == 0, run.stdout + run.stderr


def ids(settings, tags: tuple[str, ...]) -> list[str]:
    settings.DIMENSION_TAGS = tags
    return [problem.id for problem in dimension_tags_are_valid()]


def test_the_default_tags_pass_the_check(settings):
    assert dimension_tags_are_valid() == []
    assert ids(settings, ()) == []


@pytest.mark.parametrize(
    "tags, says",
    [
        (tuple(f"t{i}" for i in range(9)), "more than 8"),
        (("tool", "tool"), "'tool' more than once"),
        (("tool", "build id"), "may only use letters"),
        (("1st",), "must not start with a digit"),
        (("node",), "a breakdown of its own"),
        (("x" * 129,), "1 to 128 characters"),
    ],
    ids=["too-many", "twice", "space", "digit", "reserved", "long"],
)
def test_the_check_refuses_a_list_the_store_cannot_use(settings, tags, says):
    settings.DIMENSION_TAGS = tags
    [problem] = dimension_tags_are_valid()
    assert problem.id == "metrics.E001" and says in problem.msg
