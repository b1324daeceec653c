"""Time-travel tests of the alert state machine (pure: no database, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from perfdash.alerts.decide import Current, Decision, Observation, Spec, decide

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def run(spec: Spec, values: list[float | None], count: int = 100, step_s: int = 10) -> list[str | None]:
    """Feed one observation per step; return the event of each step."""
    current = Current("inactive", T0)
    events = []
    for i, value in enumerate(values):
        now = T0 + timedelta(seconds=step_s * i)
        d = decide(spec, current, Observation(value, 0 if value is None else count), now)
        events.append(d.event)
        since = now if d.state != current.state else current.since
        current = Current(d.state, since, now if d.notify else current.last_notified)
    return events


def test_it_fires_at_once_without_a_for_duration():
    spec = Spec("gt", 2000, 2000)
    assert run(spec, [100, 2500, 2600, 100]) == [None, "firing", None, "resolved"]


def test_it_waits_for_the_for_duration_before_firing():
    spec = Spec("gt", 2000, 2000, for_seconds=30)
    # breached from t=10; fires at t=40 (30 s later), not before
    assert run(spec, [100, 2500, 2500, 2500, 2500, 2500]) == [None, "pending", None, None, "firing", None]


def test_a_short_spike_goes_back_to_inactive_without_notifying():
    spec = Spec("gt", 2000, 2000, for_seconds=60)
    assert run(spec, [2500, 2500, 100]) == ["pending", None, "inactive"]
    assert not decide(spec, Current("pending", T0), Observation(100, 50), T0).notify


def test_hysteresis_resolves_only_below_the_recovery_threshold():
    spec = Spec("gt", 2000, 1500)
    assert run(spec, [2500, 1900, 1600, 1499]) == ["firing", None, None, "resolved"]


def test_hysteresis_for_a_lower_bound():
    spec = Spec("lt", 10, 20)  # e.g. too few active agents
    assert run(spec, [5, 15, 21]) == ["firing", None, "resolved"]


def test_too_few_samples_neither_fire_nor_resolve():
    spec = Spec("gt", 2000, 2000, min_samples=20)
    assert run(spec, [9999, 9999], count=5) == [None, None]
    firing = Current("firing", T0, last_notified=T0)
    assert decide(spec, firing, Observation(1, 5), T0) == Decision("firing")


def test_no_data_keeps_fires_or_resolves_as_configured():
    firing, inactive = Current("firing", T0, last_notified=T0), Current("inactive", T0)
    assert decide(Spec("gt", 1, 1, no_data="keep"), firing, Observation(None, 0), T0) == Decision("firing")
    assert decide(Spec("gt", 1, 1, no_data="resolve"), firing, Observation(None, 0), T0).event == "resolved"
    assert decide(Spec("gt", 1, 1, no_data="alert"), inactive, Observation(None, 0), T0).event == "firing"


def test_repeat_reminds_while_firing_at_the_interval():
    spec = Spec("gt", 2000, 2000, repeat_seconds=30)
    events = run(spec, [2500] * 8)  # 10 s steps
    assert events == ["firing", None, None, "repeat", None, None, "repeat", None]


def test_an_alert_never_announced_is_announced_at_the_next_evaluation():
    # It started firing during a silence (the engine withheld the notification): no repeat
    # interval needed, it is announced as soon as it may be.
    never = Current("firing", T0)
    assert decide(Spec("gt", 2000, 2000), never, Observation(2500, 100), T0) == Decision(
        "firing", "repeat", True
    )
    announced = Current("firing", T0, last_notified=T0)
    assert decide(Spec("gt", 2000, 2000), announced, Observation(2500, 100), T0) == Decision("firing")


def test_no_repeat_by_default_and_resolved_can_be_quiet():
    assert run(Spec("gt", 2000, 2000), [2500] * 20).count("repeat") == 0
    quiet = Spec("gt", 2000, 2000, send_resolved=False)
    d = decide(quiet, Current("firing", T0), Observation(1, 100), T0)
    assert d.event == "resolved" and not d.notify
