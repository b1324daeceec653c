from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr, ndtri, stdtrit

from perfdash.forecasting.forecast import (
    MIN_SEASONAL_STRENGTH,
    Forecast,
    _empirical_bands,
    _seasonal_regression,
    forecast,
    nodes_needed,
    seasonal_strength,
    time_to_limit,
    what_if,
)

HOUR = 3600.0
DAY = 86_400.0
T0 = 1_780_000_000.0  # an arbitrary Unix time; only differences matter


def hourly(days: int) -> np.ndarray:
    return T0 + HOUR * np.arange(days * 24)


def daily_sine(days: int, noise: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    ts = hourly(days)
    rng = np.random.default_rng(seed)
    return ts, 200 + 50 * np.sin(2 * np.pi * (ts - T0) / DAY) + rng.normal(0, noise, len(ts))


def assert_sane(fc: Forecast, steps: int) -> None:
    assert fc.ok, fc.reason
    for band in (fc.mean, fc.lower80, fc.upper80, fc.lower95, fc.upper95):
        assert band.shape == (steps,)
        assert np.all(np.isfinite(band))
    assert np.all(fc.lower95 <= fc.lower80) and np.all(fc.lower80 <= fc.mean)
    assert np.all(fc.mean <= fc.upper80) and np.all(fc.upper80 <= fc.upper95)


@pytest.mark.parametrize(
    ("hours", "slope", "horizon_days", "tolerance_h"),
    # crosses after 50 h; after 667 h (three weeks ahead: within half a day, 2 % of the lead)
    [(36, 10.0, 2, 6), (7 * 24, 0.75, 30, 12)],
)
def test_a_linear_trend_crosses_the_limit_when_expected(
    hours: int, slope: float, horizon_days: int, tolerance_h: float
) -> None:
    ts = T0 + HOUR * np.arange(hours)
    values = 500 + slope * np.arange(hours) + np.random.default_rng(2).normal(0, 2, hours)
    fc = forecast(ts, values, horizon_s=horizon_days * DAY)
    now = ts[-1]
    expected = T0 + (1000 - 500) / slope * HOUR

    crossing = time_to_limit(fc, 1000, now)

    assert_sane(fc, horizon_days * 24)
    assert crossing.within_horizon
    assert abs(crossing.at - expected) < tolerance_h * HOUR
    # The lower bound of a crossing three weeks out may reach the limit only after the horizon.
    assert crossing.earliest <= crossing.at <= (crossing.latest or math.inf)
    at_days, earliest_days, latest_days = crossing.days(now)
    assert at_days == pytest.approx((expected - now) / DAY, abs=tolerance_h * HOUR / DAY)
    assert earliest_days < at_days < (latest_days or horizon_days)


def test_a_daily_cycle_is_forecast_by_a_seasonal_model() -> None:
    ts, values = daily_sine(15, noise=3)
    history, future = values[: 14 * 24], values[14 * 24 :]

    fc = forecast(ts[: 14 * 24], history, horizon_s=DAY)

    assert_sane(fc, 24)
    members = fc.model.split(" + ")
    assert all(m.endswith(("holt_winters_daily", "seasonal_regression")) for m in members), fc.model
    assert fc.backtest_mase is not None and fc.backtest_mase < 1
    np.testing.assert_allclose(fc.times, ts[14 * 24 :])
    mape = np.mean(np.abs(fc.mean - future) / future)
    assert mape < 0.10


def test_seasonal_strength_tells_a_cycle_from_noise_around_a_trend() -> None:
    _, cycle = daily_sine(28, noise=10)
    rng = np.random.default_rng(5)
    growth = 100 * 1.03 ** (np.arange(28 * 24) / 24) + rng.normal(0, 3, 28 * 24)
    walk = 500 + np.cumsum(rng.normal(0, 2, 28 * 24))

    assert seasonal_strength(cycle, 24) > 0.8 and seasonal_strength(cycle, 168) > 0.8
    for trend_and_noise in (growth, walk):
        assert seasonal_strength(trend_and_noise, 24) < 0.3
        # a weekly cycle fitted to four weeks explains much of noise: the adjustment removes it
        assert seasonal_strength(trend_and_noise, 168) < 0.3
    assert seasonal_strength(cycle[: 2 * 24], 24) == 0.0  # under three periods: cannot tell


def test_a_series_without_a_cycle_gets_trend_models_only() -> None:
    ts = hourly(28)
    rng = np.random.default_rng(6)
    agents = np.round(80 * 1.03 ** (np.arange(len(ts)) / 24) + rng.normal(0, 2, len(ts)))

    fc = forecast(ts, agents, horizon_s=7 * DAY)

    assert_sane(fc, 7 * 24)
    assert not any(word in fc.model for word in ("winters", "seasonal")), fc.model
    assert any(note.startswith("no daily or weekly cycle") for note in fc.notes), fc.notes


def test_a_daily_swing_that_grows_with_a_compounding_level_gets_seasonal_models() -> None:
    hour = np.arange(29 * 24)
    level = 100 * np.exp(0.10 * hour / 24)  # +10 %/day
    swing = 1 + 0.3 * np.sin(2 * np.pi * hour / 24)  # +-30 % of the level
    values = level * swing * np.exp(np.random.default_rng(8).normal(0, 0.25, len(hour)))
    history = values[: 28 * 24]
    # One average cycle explains little of a swing that keeps multiplying: only on the log
    # scale is it a fixed cycle.
    assert seasonal_strength(history, 24) < MIN_SEASONAL_STRENGTH <= seasonal_strength(np.log(history), 24)

    fc = forecast(hourly(28), history, horizon_s=DAY)

    assert_sane(fc, 24)
    assert not any(note.startswith("no daily or weekly cycle") for note in fc.notes), fc.notes
    assert any(m.endswith(("holt_winters_daily", "seasonal_regression")) for m in fc.model.split(" + ")), (
        fc.model
    )
    # The forecast follows the next day's swing, not just the trend through it.
    assert np.corrcoef(fc.mean, (level * swing)[28 * 24 :])[0, 1] > 0.9


def test_a_weekend_bump_is_forecast_by_the_weekly_model_given_three_weeks() -> None:
    ts = hourly(21)
    hour = np.arange(len(ts))
    weekend = (hour // 24) % 7 >= 5
    values = 100 + 20 * np.sin(2 * np.pi * hour / 24) + 15 * weekend
    values += np.random.default_rng(4).normal(0, 2, len(ts))

    fc = forecast(ts, values, horizon_s=7 * DAY)

    assert_sane(fc, 7 * 24)
    assert all("weekly" in m for m in fc.model.split(" + ")), fc.model
    np.testing.assert_allclose(fc.mean, values[-7 * 24 :], atol=10)


def test_80_percent_intervals_cover_about_80_percent_of_held_out_points() -> None:
    ts, values = daily_sine(16, noise=10, seed=7)
    history, future = values[: 14 * 24], values[14 * 24 :]

    fc = forecast(ts[: 14 * 24], history, horizon_s=2 * DAY)

    covered = np.mean((future >= fc.lower80) & (future <= fc.upper80))
    assert 0.70 <= covered <= 0.95


def covered(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray, sd: float) -> np.ndarray:
    """The share of fresh normal noise of `sd` around `truth` that falls within each step's band."""
    return ndtr((upper - truth) / sd) - ndtr((lower - truth) / sd)


def test_bands_around_a_known_trend_cover_their_level_of_fresh_noise_near_and_far() -> None:
    # i.i.d. noise around a line: the error is mostly noise at every lead, so neither band may
    # shrink at short leads nor balloon at long ones, within the backtest's reach (100 steps,
    # about 4 days) or beyond it.
    n, sd = 21 * 24, 10.0
    t = np.arange(n + 7 * 24)
    truth = 500 + 0.5 * t
    cover80, cover95 = [], []
    for seed in range(24):  # one history's band is one draw: average over histories
        values = truth[:n] + np.random.default_rng(seed).normal(0, sd, n)
        fc = forecast(T0 + HOUR * t[:n], values, horizon_s=7 * DAY)
        cover80.append(covered(fc.lower80, fc.upper80, truth[n:], sd))
        cover95.append(covered(fc.lower95, fc.upper95, truth[n:], sd))
    for cover, low, high in ((np.mean(cover80, axis=0), 0.74, 0.86), (np.mean(cover95, axis=0), 0.91, 0.98)):
        first_day, last_days = cover[:24].mean(), cover[4 * 24 :].mean()
        assert low <= first_day <= high and low <= last_days <= high, (first_day, last_days)


def test_bands_of_a_compounding_series_cover_noise_in_proportion_to_its_level() -> None:
    # +10 %/day with a daily swing and log-normal noise: on the log scale the noise is the same
    # at every level, so the band in units grows with the level from the first day ahead.
    n, sd = 21 * 24, 0.25
    t = np.arange(n + 7 * 24)
    truth = 100 * np.exp(0.10 * t / 24) * (1 + 0.3 * np.sin(2 * np.pi * t / 24))
    cover80, cover95 = [], []
    for seed in range(3):
        values = truth[:n] * np.exp(np.random.default_rng(seed).normal(0, sd, n))
        fc = forecast(T0 + HOUR * t[:n], values, horizon_s=7 * DAY)
        assert fc.model.startswith("log_"), fc.model
        log_truth = np.log(truth[n:])
        cover80.append(covered(np.log(fc.lower80), np.log(fc.upper80), log_truth, sd))
        cover95.append(covered(np.log(fc.lower95), np.log(fc.upper95), log_truth, sd))
    for cover, low, high in ((np.mean(cover80, axis=0), 0.74, 0.86), (np.mean(cover95, axis=0), 0.91, 0.98)):
        first_day, last_days = cover[:24].mean(), cover[4 * 24 :].mean()
        assert low <= first_day <= high and low <= last_days <= high, (first_day, last_days)


def test_slope_errors_widen_the_band_with_the_lead_and_noise_gives_it_a_floor() -> None:
    lead = np.arange(1, 25.0)
    slope = np.array([1.0, -1.0, 2.0])[:, None]
    # Scatter with no level or slope in it: a pattern with its least-squares line taken out.
    pattern = np.tile([2.0, -2.0, -2.0, 2.0], 6)
    design = np.column_stack([np.ones(24), lead])
    scatter = pattern - design @ np.linalg.lstsq(design, pattern, rcond=None)[0]
    noise_sd = np.sqrt(np.sum(scatter**2) / 22)  # 24 errors less a level and a slope, per origin
    actual = np.full((3, 24), 100.0)
    mean = np.full(48, 100.0)
    far = np.arange(1, 49.0)

    # Slope errors only: the band is the slopes' root mean square times the lead, with the
    # quantiles of Student's t on three origins.
    _, upper80, lower95, _ = _empirical_bands(mean, actual + slope * lead, actual, relative=False)
    np.testing.assert_allclose(upper80 - mean, stdtrit(3, 0.90) * np.sqrt(2) * far)
    np.testing.assert_allclose(mean - lower95, stdtrit(3, 0.975) * np.sqrt(2) * far)

    # Noise only: a floor at every lead, with the normal's quantiles.
    _, upper80, lower95, _ = _empirical_bands(mean, actual + scatter, actual, relative=False)
    np.testing.assert_allclose(upper80 - mean, ndtri(0.90) * noise_sd)
    np.testing.assert_allclose(mean - lower95, ndtri(0.975) * noise_sd)

    # Relative: the same scatter on the log scale gives a band in proportion to the forecast.
    lower80, upper80, *_ = _empirical_bands(3 * mean, actual * np.exp(scatter / 100), actual, relative=True)
    np.testing.assert_allclose(np.log(upper80 / (3 * mean)), ndtri(0.90) * noise_sd / 100)
    np.testing.assert_allclose(upper80 * lower80, (3 * mean) ** 2)


def test_it_refuses_empty_input() -> None:
    fc = forecast(np.array([]), np.array([]), horizon_s=DAY)

    assert not fc.ok
    assert fc.reason == "not enough data: 0 points, need at least 6"


def test_it_refuses_three_points() -> None:
    fc = forecast(hourly(1)[:3], np.array([1.0, 2.0, 3.0]), horizon_s=DAY)

    assert not fc.ok
    assert "3 points" in fc.reason


def test_it_refuses_a_horizon_beyond_30_days() -> None:
    ts, values = daily_sine(3, noise=1)

    fc = forecast(ts, values, horizon_s=31 * DAY)

    assert not fc.ok
    assert "30 days" in fc.reason


def test_a_constant_series_gives_a_flat_forecast_with_zero_width_intervals() -> None:
    ts = hourly(3)

    fc = forecast(ts, np.full(len(ts), 42.0), horizon_s=DAY)

    assert_sane(fc, 24)
    assert fc.model == "constant"
    assert np.all(fc.mean == 42) and np.all(fc.upper95 == fc.lower95)
    assert not time_to_limit(fc, 50, ts[-1]).within_horizon


def test_a_day_long_gap_is_interpolated_and_noted() -> None:
    ts, values = daily_sine(14, noise=2)
    gap = (ts >= T0 + 6 * DAY) & (ts < T0 + 7 * DAY)

    fc = forecast(ts[~gap], values[~gap], horizon_s=DAY)

    assert_sane(fc, 24)
    assert "interpolated 24 of 336 missing points" in fc.notes
    np.testing.assert_allclose(fc.times, ts[-1] + HOUR * np.arange(1, 25))


def test_a_step_change_gives_a_forecast_near_the_new_level() -> None:
    ts = hourly(10)
    values = np.where(np.arange(len(ts)) < 5 * 24, 100.0, 300.0)

    fc = forecast(ts, values, horizon_s=DAY)

    assert_sane(fc, 24)
    assert np.all(np.abs(fc.mean - 300) < 60)


def test_nans_are_dropped_and_reported_as_missing_points() -> None:
    ts, values = daily_sine(14, noise=2)
    values[::10] = np.nan
    ts[5] = np.nan

    fc = forecast(ts, values, horizon_s=DAY)

    assert_sane(fc, 24)
    assert any(note.startswith("interpolated") for note in fc.notes)


def test_all_nan_values_are_not_enough_data() -> None:
    ts = hourly(2)

    fc = forecast(ts, np.full(len(ts), np.nan), horizon_s=DAY)

    assert not fc.ok
    assert "0 points" in fc.reason


def test_a_short_history_still_forecasts_a_trend() -> None:
    ts = hourly(1)[:8]

    fc = forecast(ts, 10 + 2 * np.arange(8.0), horizon_s=4 * HOUR)

    assert_sane(fc, 4)
    assert fc.mean == pytest.approx([26, 28, 30, 32], abs=0.5)


def test_a_series_already_over_the_limit_crosses_now() -> None:
    ts = hourly(2)
    values = 900 + np.arange(len(ts)) + np.random.default_rng(3).normal(0, 1, len(ts))
    fc = forecast(ts, values, horizon_s=DAY)

    crossing = time_to_limit(fc, 500, ts[-1])

    assert crossing.within_horizon
    assert crossing.at == crossing.earliest == crossing.latest == ts[-1]
    assert crossing.days(ts[-1]) == (0.0, 0.0, 0.0)


def test_nodes_needed_keeps_the_upper_bound_under_the_headroom() -> None:
    times = T0 + HOUR * np.arange(1, 4)
    band = np.array([100.0, 200.0, 330.0])
    fc = Forecast(True, "", "test", None, times, band, band, band, band, band, [])

    # 330 / (100 * 0.8) = 4.125 -> 5 nodes; with no headroom 330 / 100 -> 4.
    assert nodes_needed(fc, per_node_capacity=100) == 5
    assert nodes_needed(fc, per_node_capacity=100, headroom=0) == 4
    assert nodes_needed(fc, per_node_capacity=10_000) == 1


def test_nodes_needed_rejects_a_failed_forecast() -> None:
    with pytest.raises(ValueError, match="failed forecast"):
        nodes_needed(Forecast(ok=False, reason="not enough data"), per_node_capacity=100)


def test_what_if_compounds_extra_weekly_growth() -> None:
    ts, values = daily_sine(14, noise=2)
    fc = forecast(ts, values, horizon_s=28 * DAY)

    before = fc.mean.copy()

    grown = what_if(fc, 0.10)

    assert grown.mean[-1] / fc.mean[-1] == pytest.approx(1.1**4, rel=1e-6)
    assert grown.upper80[-1] / fc.upper80[-1] == pytest.approx(1.1**4, rel=1e-6)
    assert grown.mean[0] / fc.mean[0] == pytest.approx(1.1 ** (1 / 168), rel=1e-6)
    assert "what-if" in grown.model
    np.testing.assert_array_equal(fc.mean, before)


def test_a_series_that_was_never_negative_is_not_forecast_below_zero() -> None:
    ts = hourly(10)
    falling = np.maximum(0, 300 - 1.5 * np.arange(len(ts))) + np.random.default_rng(4).normal(
        0, 5, len(ts)
    ).clip(0)
    fc = forecast(ts, falling, horizon_s=10 * DAY)
    assert fc.ok and np.min(fc.lower95) == 0 and np.min(fc.mean) >= 0


def test_latency_sizing_follows_load_only_when_latency_rises_with_it() -> None:
    from perfdash.forecasting.forecast import load_fit, nodes_for_latency

    load = np.linspace(100, 600, 48)
    rising = load_fit(load, 200 + 2 * load + np.random.default_rng(5).normal(0, 10, 48))
    assert nodes_for_latency(rising, 5000, target=2000, headroom=0.2, current_nodes=4)[0] == 8  # 700 a node
    flat = load_fit(load, np.random.default_rng(6).normal(900, 50, 48))
    nodes, why = nodes_for_latency(flat, 5000, target=2000, headroom=0.2, current_nodes=4)
    assert nodes == 4 and "does not rise" in why
    slow_when_idle = load_fit(load, 1700 + 0.5 * load)
    nodes, why = nodes_for_latency(slow_when_idle, 5000, target=2000, headroom=0.2, current_nodes=4)
    assert nodes == 4 and "cannot reach" in why
    assert load_fit(np.full(48, 300.0), load) is None  # the load never changed: nothing to fit


def test_seasonal_regression_recovers_a_trend_plus_a_daily_profile_exactly() -> None:
    hour = np.arange(10 * 24)
    profile = np.random.default_rng(5).normal(0, 10, 24)
    values = 50 + 0.3 * hour + profile[hour % 24]

    ahead = _seasonal_regression(24)(values, 48)

    future = np.arange(10 * 24, 12 * 24)
    np.testing.assert_allclose(ahead, 50 + 0.3 * future + profile[future % 24], atol=1e-9)


def test_compounding_growth_with_a_proportional_daily_swing_is_forecast_on_the_log_scale() -> None:
    # +3 %/day with a daily swing of +-30 % of the level and 2 % multiplicative noise.
    t = np.arange(28 * 24)
    values = 100 * 1.03 ** (t / 24) * (1 + 0.3 * np.sin(2 * np.pi * t / 24))
    values *= np.exp(np.random.default_rng(3).normal(0, 0.02, len(t)))
    ts = T0 + HOUR * t
    history, future = values[: 21 * 24], values[21 * 24 :]

    fc = forecast(ts[: 21 * 24], history, horizon_s=7 * DAY)

    assert_sane(fc, 7 * 24)
    assert fc.model.split(" + ")[0].startswith("log_"), fc.model
    assert np.mean(np.abs(fc.mean / future - 1)) < 0.05
    covered = np.mean((future >= fc.lower80) & (future <= fc.upper80))
    assert 0.70 <= covered <= 0.95


def test_series_that_reach_zero_get_no_log_scale_models() -> None:
    ts, values = daily_sine(14, noise=3)
    values[100] = 0.0

    fc = forecast(ts, values, horizon_s=DAY)

    assert_sane(fc, 24)
    assert "log_" not in fc.model and "log_" not in " ".join(fc.notes)


def test_the_model_name_of_a_combination_fits_its_column() -> None:
    # CapacityForecast.model is a CharField(max_length=80).
    t = np.arange(28 * 24)
    weekend = (t // 24) % 7 >= 5
    values = (100 + t / 24) * (1 + 0.3 * np.sin(2 * np.pi * t / 24)) * np.where(weekend, 0.7, 1.0)
    values += np.random.default_rng(6).normal(0, 2, len(t))

    fc = forecast(T0 + HOUR * t, values, horizon_s=30 * DAY)

    assert_sane(fc, 30 * 24)
    assert 1 <= len(fc.model.split(" + ")) <= 3
    assert len(fc.model) <= 80
