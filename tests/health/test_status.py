"""The header's status, read by the web process: amber while the oldest batch waiting to be
stored is over 60 s old, or while nothing has recorded perfdash's health for over a minute (no
worker or no beat: nothing else would say so, since alert rules are evaluated by workers)."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import redis
from django.utils import timezone

from perfdash.api.models import ApiToken
from perfdash.health import gauges
from perfdash.ingest.models import PendingBatch
from perfdash.metrics.batch import Batch


def keep_batch(accepted_s_ago: float) -> None:
    token, _ = ApiToken.issue("collector", ["ingest"])
    batch = Batch("b", [("m", "n", "a", "{}")], np.array([0], np.int32), np.array([1.0]), np.array([2.0]))
    pending = PendingBatch.keep(token.id, batch)
    PendingBatch.objects.filter(pk=pending).update(
        accepted_at=timezone.now() - timedelta(seconds=accepted_s_ago)
    )


def test_perfdash_is_not_behind_with_nothing_waiting(admin_client):
    gauges.note_recorded(time.time() - 5)
    health = admin_client.get("/data/health").json()
    assert health["behind"] is False and health["oldest_batch_age_s"] == 0.0 and health["reason"] == ""
    assert 4 < health["health_recorded_s_ago"] < 15


def test_perfdash_is_not_behind_while_the_oldest_batch_waits_less_than_a_minute(admin_client):
    keep_batch(20)
    assert admin_client.get("/data/health").json()["behind"] is False


def test_perfdash_is_behind_once_a_batch_waits_more_than_a_minute(admin_client):
    keep_batch(90)
    health = admin_client.get("/data/health").json()
    assert health["behind"] is True and 89 < health["oldest_batch_age_s"] < 100
    assert "the oldest batch waiting to be stored came in 9" in health["reason"]


def test_perfdash_is_behind_once_its_health_has_not_been_recorded_for_a_minute(admin_client):
    gauges.note_recorded(time.time() - 30)
    assert admin_client.get("/data/health").json()["behind"] is False

    gauges.note_recorded(time.time() - 90)  # six recordings missed: no worker or beat runs them
    health = admin_client.get("/data/health").json()
    assert health["behind"] is True and 89 < health["health_recorded_s_ago"] < 100
    assert "health was last recorded 9" in health["reason"] and "not running" in health["reason"]


def test_a_waiting_batch_is_the_reason_shown_when_both_hold(admin_client):
    gauges.note_recorded(time.time() - 300)
    keep_batch(90)
    assert "oldest batch" in admin_client.get("/data/health").json()["reason"]


def test_perfdash_is_not_called_behind_before_its_health_was_ever_recorded(admin_client):
    # A fresh install before its first worker, or Redis emptied: unknown, not alarming.
    health = admin_client.get("/data/health").json()
    assert health["behind"] is False and health["health_recorded_s_ago"] is None


def test_the_header_status_needs_a_login(client):
    assert client.get("/data/health").status_code == 302


def test_the_status_with_redis_away_is_an_answer_not_an_error(admin_client, monkeypatch):
    monkeypatch.setattr(gauges, "client", lambda: redis.Redis(port=1, socket_connect_timeout=0.5))
    health = admin_client.get("/data/health").json()
    assert health["behind"] is False and health["health_recorded_s_ago"] is None
