"""Forecast a metric series for capacity planning.

Pure computation: numpy arrays in, small dataclasses out. No Django, no Celery.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.special import stdtrit
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from perfdash.lib.durations import DAY_S

WEEK_S = 7 * DAY_S
MAX_HORIZON_S = 30 * DAY_S
MIN_POINTS = 6
# The heuristic ETS initialisation needs at least 10 observations for non-seasonal models.
MIN_ETS_POINTS = 10
BACKTEST_ORIGINS = 3
BACKTEST_SHARE = 0.2
# The forecast is the mean of this many candidates, the best by backtest: with three origins
# the ranking of close candidates is mostly noise, and an average of good forecasts is more
# accurate than any one picked by a noisy ranking. Only candidates within COMBINE_WITHIN times the
# best one's backtest error join: averaging in a clearly worse forecast costs more than it hedges.
COMBINE = 3
COMBINE_WITHIN = 2.0
# Central prediction-interval coverages.
LEVELS = (0.80, 0.95)
# Seasonal models are candidates only where a cycle shows: a seasonal strength (the share of the
# detrended variance the cycle explains) of at least this, on the raw or the log scale (see
# `_cycle_strength`). Fitted to a series without one, they chase noise in the backtest and are
# chosen by luck. The gate lies well between what series with a daily cycle and those without
# one score.
MIN_SEASONAL_STRENGTH = 0.3


@dataclass
class Forecast:
    ok: bool
    reason: str
    model: str = ""
    backtest_mase: float | None = None
    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    mean: np.ndarray = field(default_factory=lambda: np.empty(0))
    lower80: np.ndarray = field(default_factory=lambda: np.empty(0))
    upper80: np.ndarray = field(default_factory=lambda: np.empty(0))
    lower95: np.ndarray = field(default_factory=lambda: np.empty(0))
    upper95: np.ndarray = field(default_factory=lambda: np.empty(0))
    notes: list[str] = field(default_factory=list)


@dataclass
class Crossing:
    within_horizon: bool
    at: float | None  # when the mean forecast reaches the limit
    earliest: float | None  # when the upper 80 % bound reaches it: the earliest likely time
    latest: float | None  # when the lower 80 % bound reaches it; None if not within the horizon

    def days(self, now: float) -> tuple[float | None, float | None, float | None]:
        """Days from `now` to (at, earliest, latest)."""

        def since(t: float | None) -> float | None:
            return None if t is None else (t - now) / DAY_S

        return since(self.at), since(self.earliest), since(self.latest)


# A candidate model: (history, steps ahead) -> mean forecast. Intervals come from backtest errors
# (see `_empirical_bands`), not from the models: ETS's own intervals assume the model is right,
# and are too narrow where it is not (a daily swing growing with the level) and too wide where
# its fit is loose.
Model = Callable[[np.ndarray, int], np.ndarray]


def forecast(timestamps: np.ndarray, values: np.ndarray, horizon_s: float, step_s: float = 3600) -> Forecast:
    if not 0 < horizon_s <= MAX_HORIZON_S:
        return Forecast(ok=False, reason=f"horizon must be between 1 step and 30 days, got {horizon_s} s")
    ts, ys = _clean(np.asarray(timestamps, dtype=float), np.asarray(values, dtype=float))
    if len(ts) < MIN_POINTS:
        return Forecast(ok=False, reason=f"not enough data: {len(ts)} points, need at least {MIN_POINTS}")
    grid, y, notes = _resample(ts, ys, step_s)
    steps = max(1, math.ceil(horizon_s / step_s))
    times = grid[-1] + step_s * np.arange(1, steps + 1)
    if np.ptp(y) == 0:
        flat = np.full(steps, y[-1])
        return Forecast(True, "", "constant", None, times, flat, flat, flat, flat, flat, notes)
    season, week = round(DAY_S / step_s), round(WEEK_S / step_s)
    positive = bool(np.min(y) > 0)
    cycles = {period: _cycle_strength(y, period, positive) for period in (season, week)}
    daily, weekly = (cycles[p] >= MIN_SEASONAL_STRENGTH for p in (season, week))
    if not (daily or weekly) and len(y) >= 2 * season:
        notes.append(
            "under three days of history: too short to tell a daily cycle, trend models only"
            if len(y) < 3 * season
            else f"no daily or weekly cycle (seasonal strength {max(cycles.values()):.2f}): trend models only"
        )
    candidates = _candidates(len(y), season, week, positive=positive, daily=daily, weekly=weekly)
    best, mase, predicted, actual = _choose(y, candidates, steps, season, notes)
    mean = np.mean([_fit_quietly(candidates[name], y, steps) for name in best], axis=0)
    bands = _empirical_bands(mean, predicted, actual, relative=best[0].startswith("log_"))
    # Stored in a CharField(max_length=80): at most three names of up to 23 characters.
    name = " + ".join(best)
    if np.min(y) >= 0:  # agents, bytes, rates, latencies: a series never below zero stays so
        mean, bands = np.maximum(mean, 0), tuple(np.maximum(b, 0) for b in bands)
    return Forecast(True, "", name, mase, times, mean, *bands, notes)


def time_to_limit(fc: Forecast, limit: float, now: float) -> Crossing:
    """When the forecast reaches `limit` from below; a series already over it crosses at `now`."""
    bands = (fc.mean, fc.upper80, fc.lower80)
    at, earliest, latest = (_first_crossing(fc.times, band, limit, now) for band in bands)
    return Crossing(within_horizon=at is not None, at=at, earliest=earliest, latest=latest)


def nodes_needed(fc: Forecast, per_node_capacity: float, headroom: float = 0.2) -> int:
    if not fc.ok:
        raise ValueError(f"cannot size from a failed forecast: {fc.reason}")
    if per_node_capacity <= 0 or not 0 <= headroom < 1:
        raise ValueError("need per_node_capacity > 0 and 0 <= headroom < 1")
    usable = per_node_capacity * (1 - headroom)
    return max(1, math.ceil(float(np.max(fc.upper80)) / usable))


def what_if(fc: Forecast, extra_growth_per_week: float) -> Forecast:
    """The same forecast with extra compounding growth, counted from the last observation."""
    if not fc.ok or len(fc.times) == 0:
        return fc
    step_s = fc.times[1] - fc.times[0] if len(fc.times) > 1 else 3600.0
    elapsed_weeks = (fc.times - fc.times[0] + step_s) / WEEK_S
    factor = (1 + extra_growth_per_week) ** elapsed_weeks
    return replace(
        fc,
        model=f"{fc.model} + what-if {extra_growth_per_week:+.0%}/week",
        mean=fc.mean * factor,
        lower80=fc.lower80 * factor,
        upper80=fc.upper80 * factor,
        lower95=fc.lower95 * factor,
        upper95=fc.upper95 * factor,
        notes=[*fc.notes, f"what-if: extra growth of {extra_growth_per_week:+.0%} per week applied"],
    )


@dataclass
class LoadFit:
    """Latency against load per node, by least squares: latency = intercept + slope * load."""

    intercept: float
    slope: float
    r2: float
    points: int


# Below this share of explained variance, latency is not taken to follow load.
MIN_LOAD_R2 = 0.3


def load_fit(load: np.ndarray, latency: np.ndarray) -> LoadFit | None:
    """None when there are too few paired points or the load never changed."""
    load, latency = np.asarray(load, dtype=float), np.asarray(latency, dtype=float)
    keep = np.isfinite(load) & np.isfinite(latency)
    x, y = load[keep], latency[keep]
    if len(x) < MIN_POINTS or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    spread = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(np.sum((y - intercept - slope * x) ** 2)) / spread if spread > 0 else 0.0
    return LoadFit(float(intercept), float(slope), r2, len(x))


def nodes_for_latency(
    fit: LoadFit | None, peak_load: float, target: float, headroom: float, current_nodes: int
) -> tuple[int, str]:
    """Nodes that keep latency at or under target * (1 - headroom) when the fleet carries
    `peak_load` (agents in all), if latency rises with agents per node; else the current
    count, and why. Returns (nodes, explanation)."""
    current_nodes = max(1, current_nodes)
    if fit is None:
        return current_nodes, "not enough history to relate latency to load; keeping the current count"
    if fit.slope <= 0 or fit.r2 < MIN_LOAD_R2:
        return current_nodes, (
            f"latency does not rise with agents per node (R² = {fit.r2:.2f} over {fit.points} points): "
            "more nodes would not lower it"
        )
    goal = target * (1 - headroom)
    if goal <= fit.intercept:
        return current_nodes, (
            f"latency is {fit.intercept:.0f} even on an idle node, over the goal of {goal:.0f}: "
            "more nodes cannot reach it"
        )
    per_node = (goal - fit.intercept) / fit.slope
    return max(1, math.ceil(peak_load / per_node)), (
        f"latency = {fit.intercept:.0f} + {fit.slope:.3g} per agent on a node (R² = {fit.r2:.2f}): "
        f"at most {per_node:.0f} agents per node keep it under {goal:.0f}"
    )


# --- preparing the series -------------------------------------------------------------------


def _clean(ts: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(ts) & np.isfinite(ys)
    order = np.argsort(ts[keep], kind="stable")
    return ts[keep][order], ys[keep][order]


def _resample(ts: np.ndarray, ys: np.ndarray, step_s: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Average into `step_s` buckets and fill empty buckets by linear interpolation."""
    slot = np.round((ts - ts[0]) / step_s).astype(int)
    counts = np.bincount(slot)
    seen = counts > 0
    y = np.bincount(slot, weights=ys)[seen] / counts[seen]
    idx = np.arange(len(counts))
    grid = ts[0] + step_s * idx
    notes = []
    missing = int((~seen).sum())
    if missing:
        notes.append(f"interpolated {missing} of {len(counts)} missing points")
        y = np.interp(idx, idx[seen], y)
    return grid, y, notes


# --- candidate models -----------------------------------------------------------------------

# Seasonal models that also get a version fitted on the log scale, for series that never reach
# zero: there growth compounds and the daily swing grows with the level (multiplicative
# seasonality), which additive models on the raw scale cannot follow.
LOG_SCALE = ("holt_winters_daily", "holt_winters_weekly", "seasonal_regression")


def seasonal_strength(y: np.ndarray, period: int) -> float:
    """0-1: how much of the series' variance around its trend (a moving average over one period)
    a fixed cycle of that period explains, adjusted for the levels it fits (like an adjusted R²:
    a weekly cycle fitted to two weeks explains about half of pure noise). 0 with under three
    periods of history."""
    if len(y) < 3 * period:
        return 0.0
    trend = np.convolve(y, np.ones(period) / period, mode="valid")
    half = period // 2
    detrended = y[half : half + len(trend)] - trend
    pos = np.arange(len(detrended)) % period
    cycle = (np.bincount(pos, detrended, period) / np.bincount(pos, minlength=period))[pos]
    spread, m = float(np.var(detrended)), len(detrended)
    if spread == 0:
        return 0.0
    unexplained = float(np.var(detrended - cycle)) / spread
    return max(0.0, 1 - unexplained * (m - 1) / (m - period))


def _cycle_strength(y: np.ndarray, period: int, positive: bool) -> float:
    """The seasonal strength on the raw scale or, for a series that never reaches zero, on the
    log scale, whichever is higher. A swing that grows in proportion to a compounding level
    (multiplicative seasonality) is a fixed cycle only on the log scale: on the raw scale one
    average cycle explains little of it, and the series would never get the log-scale seasonal
    candidates made for exactly that case."""
    raw = seasonal_strength(y, period)
    return max(raw, seasonal_strength(np.log(y), period)) if positive else raw


def _candidates(
    n: int, season: int, week: int, positive: bool, daily: bool = True, weekly: bool = True
) -> dict[str, Model]:
    models: dict[str, Model] = {"linear_trend": _linear}
    if n >= MIN_ETS_POINTS:
        models["holt_trend"] = _ets()
        models["damped_trend_ets"] = _ets(damped=True)
    if daily and n >= 2 * season:
        models["holt_winters_daily"] = _ets(season=season)
        models["seasonal_regression"] = _seasonal_regression(season)
    if weekly and n >= 3 * week:
        models["holt_winters_weekly"] = _ets(season=week)
    if positive:
        models.update({f"log_{name}": _on_log_scale(models[name]) for name in LOG_SCALE if name in models})
    return models


def _min_history(name: str, season: int, week: int) -> int:
    # Each model needs this much training history at every backtest origin.
    needs = {
        "linear_trend": 3,
        "holt_winters_daily": 2 * season,
        "seasonal_regression": 2 * season,
        "holt_winters_weekly": 2 * week,
    }
    return needs.get(name.removeprefix("log_"), MIN_ETS_POINTS)


def _linear(y: np.ndarray, steps: int) -> np.ndarray:
    x = np.arange(len(y))
    slope, intercept = np.polyfit(x, y, 1) if len(y) > 1 else (0.0, y[0])
    return intercept + slope * np.arange(len(y), len(y) + steps)


def _seasonal_regression(season: int) -> Model:
    """Least squares on a linear trend and one level per step of the season. Unlike Holt-Winters
    it weighs all history alike, so it does not chase the last few seasons of a noisy cycle."""

    def fit(y: np.ndarray, steps: int) -> np.ndarray:
        # Solved in closed form (no BLAS): the slope from deviations from each step's mean, then
        # each step's level.
        x = np.arange(len(y), dtype=float)
        pos = np.arange(len(y)) % season
        count = np.bincount(pos, minlength=season)
        x_dev = x - (np.bincount(pos, x, season) / count)[pos]
        y_dev = y - (np.bincount(pos, y, season) / count)[pos]
        slope = float(np.sum(x_dev * y_dev) / np.sum(x_dev * x_dev))
        level = np.bincount(pos, y - slope * x, season) / count
        ahead = np.arange(len(y), len(y) + steps)
        return level[ahead % season] + slope * ahead

    return fit


def _on_log_scale(model: Model) -> Model:
    """`model` fitted to log(y): a trend in per cent per step and a season in proportion to the level."""

    def fit(y: np.ndarray, steps: int) -> np.ndarray:
        with np.errstate(over="ignore"):  # a runaway fit gives inf, and loses the backtest
            return np.exp(model(np.log(y), steps))

    return fit


def _ets(season: int | None = None, damped: bool = False) -> Model:
    def fit(y: np.ndarray, steps: int) -> np.ndarray:
        model = ETSModel(
            pd.Series(y),
            error="add",
            trend="add",
            damped_trend=damped,
            seasonal="add" if season else None,
            seasonal_periods=season,
            initialization_method="heuristic",
        )
        return model.fit(disp=False).forecast(steps).to_numpy()

    return fit


def _fit_quietly(model: Model, y: np.ndarray, steps: int) -> np.ndarray:
    # Smoothing-parameter optimisation often stops at a bound on short or flat series; that fit is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model(y, steps)


# --- choosing by rolling-origin backtest ----------------------------------------------------


def _choose(
    y: np.ndarray, candidates: dict[str, Model], steps: int, season: int, notes: list[str]
) -> tuple[list[str], float | None, np.ndarray, np.ndarray]:
    """The COMBINE models with the lowest backtest MASE, the MASE of their mean forecast, and
    that mean forecast and the actual values at each backtest origin they share (one row per
    origin, one column per step ahead)."""
    h = max(1, min(steps, int(BACKTEST_SHARE * len(y))))
    scale = _naive_scale(y, season)
    errors = _backtest(y, candidates, h, season, notes)
    if not errors:
        # Too short to backtest anything: a linear trend is the least surprising guess, and the
        # history's one-step changes stand in for its errors one step ahead.
        return ["linear_trend"], None, y[:-1, None], y[1:, None]
    mase = {name: float(np.mean(np.abs(np.array(list(e.values()))))) / scale for name, e in errors.items()}
    ranked = sorted(mase, key=mase.__getitem__)
    best = [name for name in ranked[:COMBINE] if mase[name] <= COMBINE_WITHIN * mase[ranked[0]]]
    shared = sorted(set.intersection(*(set(errors[name]) for name in best)))
    combined = np.array([np.mean([errors[name][o] for name in best], axis=0) for o in shared])
    actual = np.array([y[o : o + h] for o in shared])
    scores = ", ".join(f"{name}={mase[name]:.2f}" for name in ranked)
    notes.append(f"backtest MASE ({h} steps, up to {BACKTEST_ORIGINS} origins): {scores}")
    return best, float(np.mean(np.abs(combined))) / scale, combined + actual, actual


def _backtest(
    y: np.ndarray, candidates: dict[str, Model], h: int, season: int, notes: list[str]
) -> dict[str, dict[int, np.ndarray]]:
    """Forecast errors of each candidate, `h` steps ahead of each origin: {name: {origin: errors}}."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for name, model in candidates.items():
        origins = [len(y) - k * h for k in range(1, BACKTEST_ORIGINS + 1)]
        origins = [o for o in origins if o >= _min_history(name, season, 7 * season)]
        if not origins:
            continue
        try:
            errors = {o: _fit_quietly(model, y[:o], h) - y[o : o + h] for o in origins}
        except (ValueError, np.linalg.LinAlgError) as exc:
            notes.append(f"{name} skipped: {exc}")
            continue
        if all(np.all(np.isfinite(e)) for e in errors.values()):
            out[name] = errors
    return out


def _naive_scale(y: np.ndarray, season: int) -> float:
    """Mean absolute error of the seasonal naive forecast in-sample (plain naive if under two seasons)."""
    lag = season if len(y) > 2 * season else 1
    scale = float(np.mean(np.abs(y[lag:] - y[:-lag])))
    # A series flat between lags (e.g. one step change) has zero naive error; avoid dividing by it.
    return scale if scale > 0 else float(np.std(y)) or 1.0


# --- intervals --------------------------------------------------------------------------------


def _empirical_bands(
    mean: np.ndarray, predicted: np.ndarray, actual: np.ndarray, relative: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intervals shaped per step ahead (lead) from the backtest's forecasts and actual values
    (one row per origin, one column per lead).

    Each origin's errors are split into a straight line through them (how far that forecast's
    level and slope were off) and the scatter around the line (noise, a cycle not quite fitted).
    A new forecast's error at lead k has the scatter's variance, a floor at every lead, plus the
    mean square of the origins' lines at k, which grows with their slope errors and goes on
    beyond the backtest's reach. The lines come from a few origins only, so the quantiles are
    Student's t with Welch-Satterthwaite degrees of freedom rather than the normal's.

    With `relative` (the best model was fitted on the log scale) and a forecast that stays
    positive, errors are taken on the log scale: the noise of such a series is in proportion to
    a level that grows, so errors in units from older origins would understate today's."""
    relative = relative and min(np.min(predicted), np.min(mean)) > 0
    errors = np.log(predicted) - np.log(actual) if relative else predicted - actual
    origins, reach = errors.shape
    # Under three leads, a line with a level leaves no scatter to measure the noise by: the
    # whole error is then taken to grow in proportion to the lead.
    terms = 2 if reach >= 3 else 1
    line = np.column_stack([np.ones(reach), np.arange(1, reach + 1)])[:, -terms:]
    coef = np.linalg.lstsq(line, errors.T, rcond=None)[0]
    noise = float(np.sum((errors - (line @ coef).T) ** 2)) / max(1, origins * (reach - terms))
    lead = np.column_stack([np.ones(len(mean)), np.arange(1, len(mean) + 1)])[:, -terms:]
    # A line fitted to noisy errors strays by the noise alone, the more so the further it is
    # extended (by `leverage` times the noise's variance): that part is not the trend's.
    leverage = np.sum((lead @ np.linalg.inv(line.T @ line)) * lead, axis=1)
    trend = np.maximum(np.mean((lead @ coef) ** 2, axis=1) - noise * leverage, 0)
    spread = noise + trend
    # Welch-Satterthwaite degrees of freedom: the noise is measured on many errors (taken as
    # infinitely many), the trend on one line per origin.
    trend_share = np.divide(trend, spread, out=np.zeros_like(spread), where=spread > 0)
    with np.errstate(divide="ignore"):  # no trend error: infinite degrees of freedom, the normal
        dof = origins / trend_share**2
    bands = []
    for level in LEVELS:
        # A forecast further ahead is no surer than a nearer one, though lines that were off in
        # level more than in slope would narrow the band for a while.
        half = np.maximum.accumulate(stdtrit(dof, (1 + level) / 2) * np.sqrt(spread))
        bands += [mean * np.exp(-half), mean * np.exp(half)] if relative else [mean - half, mean + half]
    return bands[0], bands[1], bands[2], bands[3]


def _first_crossing(times: np.ndarray, band: np.ndarray, limit: float, now: float) -> float | None:
    above = np.nonzero(band >= limit)[0]
    if len(above) == 0:
        return None
    i = int(above[0])
    if i == 0:
        return now
    # Interpolate between the last step below and the first at or above the limit.
    frac = (limit - band[i - 1]) / (band[i] - band[i - 1])
    return max(now, float(times[i - 1] + frac * (times[i] - times[i - 1])))
