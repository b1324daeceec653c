"""Thresholds typed and shown with units, stored in the metric's base unit."""

from __future__ import annotations

import pytest

from perfdash.lib import units
from perfdash.lib.units import BYTES, DAYS, MILLISECONDS, NUMBER, PER_SECOND, SECONDS


@pytest.mark.parametrize(
    ("metric", "statistic", "kind"),
    [
        ("agent_response_ms", "p95", MILLISECONDS),
        ("job_seconds", "max", SECONDS),
        ("agent_memory_bytes", "max", BYTES),
        ("errors_total", "avg", NUMBER),
        ("active_agents", "max", NUMBER),
        ("agent_response_ms", "count", NUMBER),
        ("agent_memory_bytes", "rate", PER_SECOND),
        ("errors_total", "rate", PER_SECOND),
    ],
)
def test_the_unit_follows_the_metric_suffix_and_the_statistic(metric, statistic, kind):
    assert units.of_metric(metric, statistic) is kind


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("2 s", MILLISECONDS, 2000.0),
        ("2000", MILLISECONDS, 2000.0),
        ("2000 ms", MILLISECONDS, 2000.0),
        ("1.1 s", MILLISECONDS, 1100.0),
        ("1.5min", MILLISECONDS, 90000.0),
        ("  250 MS ", MILLISECONDS, 250.0),
        ("2 s", SECONDS, 2.0),
        ("500 ms", SECONDS, 0.5),
        ("100 MB", BYTES, 100_000_000.0),
        ("100MB", BYTES, 100_000_000.0),
        ("1.5 kB", BYTES, 1500.0),
        ("2 GB", BYTES, 2e9),
        ("1 KiB", BYTES, 1024.0),
        ("512 MiB", BYTES, 512 * 2**20),
        ("1 GiB", BYTES, 2**30),
        ("100000000", BYTES, 100_000_000.0),
        ("42", NUMBER, 42.0),
        ("-0.5", NUMBER, -0.5),
        ("1e3", NUMBER, 1000.0),
        ("5/s", PER_SECOND, 5.0),
        ("5 /s", PER_SECOND, 5.0),
        ("7", DAYS, 7.0),
        ("7 days", DAYS, 7.0),
        ("1.5 d", DAYS, 1.5),
    ],
)
def test_it_parses_a_value_with_or_without_a_unit_into_the_base_unit(text, kind, value):
    assert units.parse(text, kind) == value


@pytest.mark.parametrize(
    ("text", "kind", "says"),
    [
        ("2 s", BYTES, "Give a size in bytes"),
        ("100 MB", MILLISECONDS, "Give a duration"),
        ("3 MB", NUMBER, "Give a plain number: 'MB' is not a unit for it."),
        ("3 ms", PER_SECOND, "Give a rate per second"),
        ("2 weeks", DAYS, "Give a number of days"),
        ("100,000", NUMBER, "is not a number"),
        ("fast", MILLISECONDS, "is not a number"),
        ("", MILLISECONDS, "is not a number"),
        ("1e999", NUMBER, "is too large"),
    ],
)
def test_it_rejects_a_wrong_unit_or_no_number_with_a_message(text, kind, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        units.parse(text, kind)


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (250.0, MILLISECONDS, "250 ms"),
        (2000.0, MILLISECONDS, "2 s"),
        (1500.0, MILLISECONDS, "1.5 s"),
        (90000.0, MILLISECONDS, "1.5 min"),
        (100000.0, MILLISECONDS, "100 s"),  # not 1.666… min
        (7_200_000.0, MILLISECONDS, "2 h"),
        (0.0, MILLISECONDS, "0 ms"),
        (0.5, MILLISECONDS, "0.5 ms"),
        (0.5, SECONDS, "500 ms"),
        (90.0, SECONDS, "1.5 min"),
        (100_000_000.0, BYTES, "100 MB"),
        (123_456_789.0, BYTES, "123.456789 MB"),
        (2**30, BYTES, "1.073741824 GB"),
        (999.0, BYTES, "999 B"),
        (1e20, NUMBER, "100000000000000000000"),
        (1e-7, NUMBER, "0.0000001"),
        (5.0, PER_SECOND, "5/s"),
        (7.0, DAYS, "7 d"),
    ],
)
def test_it_shows_a_value_in_the_largest_unit_that_shows_it_exactly(value, kind, text):
    assert units.display(value, kind) == text


@pytest.mark.parametrize("kind", [MILLISECONDS, SECONDS, BYTES, NUMBER, PER_SECOND, DAYS])
@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, 1 / 3, 999.999, 1234.5, 61_000.0, 1e15, -2500.0])
def test_what_it_shows_parses_back_to_the_same_value(kind, value):
    assert units.parse(units.display(value, kind), kind) == value
