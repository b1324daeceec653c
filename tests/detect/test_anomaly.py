"""Seasonal anomalies on histories with a known answer: a value normal at the daily peak is
anomalous at night, a normal night is not, too little history gives no baseline, and the
explanation says why; the read API and the rule kind, on the real database."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from perfdash.api.models import ApiToken
from perfdash.detect import anomaly
from perfdash.ingest.models import IngestedBatch
from perfdash.metrics.batch import Batch
from perfdash.metrics.scope import Scope

HOUR, DAY = 3600, 86400
# The judged hour ends at 03:30 UTC, the daily low; the peak is at 15:00.
NOW = (time.time() // DAY) * DAY + 3.5 * HOUR
if time.time() < NOW:
    NOW -= DAY


def level(t: np.ndarray) -> np.ndarray:
    """The daily cycle of the p95: 1 s at 03:00, 3 s at 15:00."""
    hour = (t % DAY) / HOUR
    return 2000 - 1000 * np.cos(2 * math.pi * (hour - 3) / 24)


def history(days: int, last_hour_factor: float) -> None:
    """`days` days of responses following the daily cycle, 40 an hour, with some noise; the
    last hour's values multiplied by `last_hour_factor`."""
    rng = np.random.default_rng(days)
    ts = NOW - rng.uniform(0, days * DAY, days * 24 * 40)
    values = level(ts) * np.exp(0.05 * rng.standard_normal(len(ts)))
    values = np.where(ts > NOW - HOUR, values * last_hour_factor, values)
    token = ApiToken.issue("h", ["ingest"])[0]
    series = [("agent_response_ms", "node-1", f"agent-{a}", "{}") for a in range(4)]
    idx = (np.arange(len(ts)) % 4).astype(np.int32)
    assert IngestedBatch.store(
        token.id, Batch(f"h{days}{last_hour_factor}", series, idx, ts, np.round(values, 2)), now=NOW
    )


def test_a_value_normal_at_the_peak_is_anomalous_at_night_and_explained(db):
    history(10, last_hour_factor=2.5)  # ~2.6 s at 03:00: the afternoon's value
    j = anomaly.judge("agent_response_ms", "p50", Scope(), 4, NOW)
    assert j.days >= 10 and not j.weekly
    assert j.expected == pytest.approx(1000, rel=0.1) and j.mads > 4 and j.anomalous(4)
    said = anomaly.explain("agent_response_ms", "p50", j)
    assert said.startswith("p50 2.") and "expected 1" in said and "for 03:00 UTC from the last" in said
    assert said.endswith("MADs above")


def test_a_normal_night_is_not_anomalous(db):
    history(10, last_hour_factor=1.0)
    j = anomaly.judge("agent_response_ms", "p50", Scope(), 4, NOW)
    assert j.band[0] < j.value < j.band[1] and not j.anomalous(4)


def test_too_little_history_gives_no_baseline(db):
    history(4, last_hour_factor=2.5)
    j = anomaly.judge("agent_response_ms", "p50", Scope(), 4, NOW)
    assert j.expected is None and j.mads is None and not j.anomalous(4)
    assert "not enough history" in anomaly.explain("agent_response_ms", "p50", j)


def test_the_baseline_is_refit_when_the_hour_changes_not_at_every_pass(db):
    history(4, last_hour_factor=1.0)  # too little history: no baseline in the hour before NOW's
    assert anomaly.judge("agent_response_ms", "p50", Scope(), 4, NOW - HOUR).expected is None
    history(10, last_hour_factor=1.0)  # the history fills in, within the same hour
    assert anomaly.judge("agent_response_ms", "p50", Scope(), 4, NOW - HOUR + 60).expected is None
    assert anomaly.judge("agent_response_ms", "p50", Scope(), 4, NOW).expected == pytest.approx(1000, rel=0.1)


def test_the_read_api_answers_the_judgement_and_its_explanation(client, read_token, db, monkeypatch):
    history(10, last_hour_factor=2.5)
    monkeypatch.setattr(anomaly.time, "time", lambda: NOW)
    r = client.get(
        "/api/v1/anomaly?metric=agent_response_ms&stat=p50", HTTP_AUTHORIZATION=f"Bearer {read_token}"
    )
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["anomalous"] is True and body["history_days"] >= 10 and "MADs above" in body["explanation"]
    bad = client.get(
        "/api/v1/anomaly?metric=agent_response_ms&stat=p42", HTTP_AUTHORIZATION=f"Bearer {read_token}"
    )
    assert bad.status_code == 400 and bad.json()["param"] == "stat"


def test_a_chart_band_follows_the_time_of_day(db):
    history(10, last_hour_factor=1.0)
    base = anomaly.baseline("agent_response_ms", "p50", Scope(), NOW, NOW)
    night, afternoon = NOW - 30 * 60, NOW - 30 * 60 + 12 * HOUR - DAY  # 03:00 and 15:00
    band = anomaly.band(base, [night, afternoon], 4)
    assert band["lo"][0] < 1000 < band["hi"][0] < band["lo"][1] < 3000 < band["hi"][1]
    assert (
        anomaly.band(anomaly.baseline("agent_response_ms", "p50", Scope(), NOW - 8 * DAY, NOW), [night], 4)
        is None
    )


def test_the_overviews_latency_chart_draws_the_usual_band_of_the_time_of_day(db, client):
    from django.contrib.auth.models import User

    history(10, last_hour_factor=1.0)  # responses up to NOW, at most a day ago
    client.force_login(User.objects.create_user("viewer", password="x" * 12))
    window = int(time.time() - NOW + HOUR)  # the chart reaches back over the history's last hour
    panel = client.get(f"/data/overview?window={window}s").json()["latency"][0]
    assert panel["metric"] == "agent_response_ms"
    hi = [h for h in panel["band"]["hi"] if h is not None]
    # p95 (the band's statistic) over the daily cycle of 1 s to 3 s: the band spans it
    assert hi and 1000 < max(hi) < 6000 and min(panel["band"]["lo"][i] or 0 for i in range(len(hi))) >= 0
