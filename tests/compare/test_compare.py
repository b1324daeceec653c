"""The comparison's pure functions: cohorts drawn from known distributions, no database."""

from __future__ import annotations

import numpy as np
import pytest

from perfdash.compare.compare import (
    FASTER,
    INSUFFICIENT,
    NO_CHANGE,
    SLOWER,
    Options,
    bin_edges,
    compare,
    quantiles,
    verdict,
)
from perfdash.metrics.sketch import keys_for
from tests.compare.helpers import cells, cohort, true_quantile

AGENTS = np.arange(20)
SEEDS = range(20)


def contains(lo: float, hi: float, x: float) -> bool:
    return lo <= x <= hi


def test_the_intervals_of_the_difference_contain_the_true_one_for_most_seeds():
    hits = {"mean": 0, "p50": 0, "p95": 0, "p99": 0}
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        a, b = cohort(rng, 3000, AGENTS), cohort(rng, 3000, AGENTS, factor=1.05)
        result = compare(a, b, Options(seed=seed))
        for stat in hits:
            d = result.diff[stat]
            hits[stat] += contains(d.lo, d.hi, 0.05)
    assert all(n >= 18 for n in hits.values()), hits


def test_each_cohorts_interval_contains_its_true_quantile_for_most_seeds():
    hits = 0
    for seed in SEEDS:
        rng = np.random.default_rng(100 + seed)
        result = compare(cohort(rng, 2000, AGENTS), cohort(rng, 2000, AGENTS), Options(seed=seed))
        hits += contains(result.a["p95"].lo, result.a["p95"].hi, true_quantile(0.95))
    assert hits >= 18


def test_cohorts_from_the_same_distribution_show_no_change_for_most_seeds():
    unchanged = 0
    for seed in SEEDS:
        rng = np.random.default_rng(200 + seed)
        result = compare(cohort(rng, 5000, AGENTS), cohort(rng, 5000, AGENTS), Options(seed=seed))
        unchanged += result.verdict == NO_CHANGE
    assert unchanged >= 18


@pytest.mark.parametrize(("factor", "expected"), [(1.15, SLOWER), (0.85, FASTER)])
def test_a_shift_is_found(factor, expected):
    rng = np.random.default_rng(3)
    result = compare(cohort(rng, 5000, AGENTS), cohort(rng, 5000, AGENTS, factor=factor), Options())
    assert result.verdict == expected
    assert result.diff["p95"].rel == pytest.approx(factor - 1, abs=0.05)


def test_cohorts_on_different_agents_count_the_agents_own_differences():
    """Agents that differ by ~15 % each: two cohorts on ten agents of their own differ by
    several percent by who is in them, and their intervals must say so."""
    covered, wrong = 0, 0
    for seed in SEEDS:
        rng = np.random.default_rng(300 + seed)
        agent_factor = np.exp(rng.normal(0, 0.15, 20))
        names = [f"agent-{i}" for i in range(20)]
        a = cohort(rng, 5000, np.arange(10), agent_factor=agent_factor, names=names)
        b = cohort(rng, 5000, np.arange(10, 20), agent_factor=agent_factor, names=names)
        result = compare(a, b, Options(seed=seed))
        covered += contains(result.diff["p95"].lo, result.diff["p95"].hi, 0.0)
        wrong += result.verdict != NO_CHANGE
    assert covered >= 18 and wrong <= 2


def test_an_episode_that_slows_both_cohorts_at_once_decides_nothing():
    unchanged = 0
    for seed in SEEDS:
        rng = np.random.default_rng(400 + seed)
        episode = (1200, 2400, 1.6)
        a = cohort(rng, 5000, AGENTS, slowdown=episode)
        b = cohort(rng, 5000, AGENTS, slowdown=episode)
        unchanged += compare(a, b, Options(seed=seed)).verdict == NO_CHANGE
    assert unchanged >= 18


def test_a_difference_smaller_than_min_effect_is_no_change_however_sure():
    rng = np.random.default_rng(5)
    a, b = cohort(rng, 200_000, AGENTS), cohort(rng, 200_000, AGENTS, factor=1.015)
    result = compare(a, b, Options(stats=("p50",), stat="p50"))
    assert result.diff["p50"].lo > 0
    assert result.verdict == NO_CHANGE
    assert compare(a, b, Options(stats=("p50",), stat="p50", min_effect=0.01)).verdict == SLOWER


@pytest.mark.parametrize(
    ("rel", "lo", "hi", "expected"),
    [
        (0.10, 0.05, 0.15, SLOWER),
        (0.10, -0.01, 0.21, NO_CHANGE),
        (0.015, 0.01, 0.02, NO_CHANGE),
        (-0.10, -0.15, -0.05, FASTER),
        (-0.015, -0.02, -0.01, NO_CHANGE),
    ],
)
def test_a_verdict_needs_an_interval_that_excludes_zero_and_a_difference_above_min_effect(
    rel, lo, hi, expected
):
    assert verdict(rel, lo, hi, 0.02) == expected


def test_too_few_points_is_insufficient_data_never_a_guess():
    rng = np.random.default_rng(6)
    a, b = cohort(rng, 99, AGENTS), cohort(rng, 5000, AGENTS, factor=2.0)
    result = compare(a, b, Options())
    assert result.verdict == INSUFFICIENT
    assert result.a == {s: None for s in ("mean", "p50", "p90", "p95", "p99")}
    assert {d.verdict for d in result.diff.values()} == {INSUFFICIENT}
    assert any("a has 99 points, fewer than the 100" in n for n in result.notes)
    assert compare(a, b, Options(min_count=50)).verdict == SLOWER


def test_points_in_fewer_than_ten_minutes_are_insufficient_data():
    rng = np.random.default_rng(7)
    a = cohort(rng, 5000, AGENTS, t0=0, t1=540)  # nine minutes
    b = cohort(rng, 5000, AGENTS, t0=0, t1=3600)
    result = compare(a, b, Options())
    assert result.verdict == INSUFFICIENT
    assert any("a has points in 9 minutes, fewer than the 10" in n for n in result.notes)


def test_a_before_after_comparison_says_what_else_changed_counts():
    rng = np.random.default_rng(8)
    a = cohort(rng, 3000, AGENTS, t0=0, t1=3600)
    b = cohort(rng, 3000, AGENTS, t0=3600, t1=7200, factor=1.3)
    result = compare(a, b, Options())
    assert result.verdict == SLOWER
    assert any("cover different times" in n for n in result.notes)


def test_rates_compare_the_sum_of_values_per_second():
    rng = np.random.default_rng(9)
    ts_a, ts_b = rng.uniform(0, 3600, 3600), rng.uniform(0, 3600, 7200)
    a = cells(np.ones(3600), rng.integers(0, 20, 3600), ts_a)
    b = cells(np.ones(7200), rng.integers(0, 20, 7200), ts_b)
    result = compare(a, b, Options(stats=("rate",), stat="rate"))
    assert result.a["rate"].value == pytest.approx(1.0)
    assert result.a["rate"].lo < 1.0 < result.a["rate"].hi
    assert result.diff["rate"].rel == pytest.approx(1.0)
    assert result.verdict == SLOWER


def test_the_same_data_gets_the_same_answer():
    rng = np.random.default_rng(10)
    a, b = cohort(rng, 2000, AGENTS), cohort(rng, 2000, AGENTS)
    assert compare(a, b, Options()).as_json() == compare(a, b, Options()).as_json()


def test_the_answer_has_each_stat_with_its_interval_and_the_verdict_of_the_one_asked():
    rng = np.random.default_rng(11)
    body = compare(cohort(rng, 2000, AGENTS), cohort(rng, 2000, AGENTS, factor=1.5), Options()).as_json()
    assert set(body) == {"a", "b", "diff", "verdict", "stat", "method", "notes"}
    assert set(body["a"]) == {"count", "mean", "p50", "p90", "p95", "p99"}
    assert body["a"]["count"] == 2000
    assert set(body["a"]["p95"]) == {"value", "lo", "hi"}
    assert set(body["diff"]["p95"]) == {"rel", "lo", "hi", "verdict"}
    assert body["stat"] == "p95" and body["verdict"] == body["diff"]["p95"]["verdict"] == SLOWER
    assert "0.5 %" in body["notes"][0]


def test_quantiles_interpolate_within_the_bin_where_the_weight_reaches_q():
    keys = keys_for(np.array([100.0, 200.0]))
    lo, hi = bin_edges(keys)
    assert lo[0] < 100.0 <= hi[0] and hi[0] / lo[0] == pytest.approx(1.01005, rel=1e-4)
    got = quantiles(np.array([[1.0, 1.0], [3.0, 1.0]]), lo, hi, [0.25, 0.5])
    assert got[0, 0] == pytest.approx((lo[0] + hi[0]) / 2)  # half of the first bin's weight
    assert got[0, 1] == pytest.approx(hi[0])
    assert got[1, 1] == pytest.approx(lo[0] + (hi[0] - lo[0]) * 2 / 3)


def test_bins_of_negative_values_and_zero_span_their_values():
    values = np.array([-250.0, 0.0, 3.5])
    lo, hi = bin_edges(keys_for(values))
    assert (lo <= values).all() and (values <= hi).all()
    assert lo[1] == hi[1] == 0.0


def test_a_cohort_whose_points_come_from_one_or_two_agents_gets_a_wide_interval_not_an_error():
    rng = np.random.default_rng(12)
    a = cohort(rng, 3000, np.array([0, 1]))
    mostly_one = cohort(rng, 3000, np.array([2, 2, 2, 2, 2, 2, 2, 2, 2, 3]), agent_factor=np.ones(4))
    result = compare(a, mostly_one, Options())
    assert result.verdict == NO_CHANGE
    d = result.diff["p95"]
    assert np.isfinite([d.lo, d.hi]).all() and d.lo < 0 < d.hi
