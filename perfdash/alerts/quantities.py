"""A rule's thresholds and measured values as people type and read them: in the metric's
units ("2 s", "100 MB"), or days for a forecast rule, a percentage for a deploy rule, MADs
for an outlier rule, times the alerting rate for a burn-rate rule. Used by the admin's forms
and lists and by the dashboard's alerts table."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from perfdash.alerts.models import AlertRule
from perfdash.lib import units


class RuleLike(Protocol):
    kind: str
    metric: str
    statistic: str


# A deploy rule's threshold: the smallest slowdown that notifies, typed as a percentage and
# stored as a fraction (10 % is 0.1), as the verification's relative changes are.
PERCENT = units.Kind("a percentage (10 or 10 %)", {"": Decimal("0.01"), "%": Decimal("0.01")}, ("%",))
# An outlier rule's threshold: spreads (scaled MADs) above the peers' median.
MADS = units.Kind("a number of MADs (5)", {"": Decimal(1), "mads": Decimal(1), "mad": Decimal(1)}, ("MADs",))
# A burn-rate rule's threshold and values: the error budget's burn rate over the rate that
# alerts, shown as a multiple ("1.056" followed by the multiplication sign, as the SLO page
# writes burn rates), so 1 fires; typed with that sign, an "x" or none.
TIMES = "\u00d7"
BURN = units.Kind(
    "a burn rate (1, 1x)", {"": Decimal(1), TIMES: Decimal(1), "x": Decimal(1)}, (TIMES,), joiner=""
)


def threshold_kind(kind: str, metric: str, statistic: str) -> units.Kind:
    """What a rule's thresholds measure: days for a forecast rule, a relative change for a
    deploy rule, else the statistic's unit."""
    if kind == AlertRule.Kind.FORECAST:
        return units.DAYS
    if kind == AlertRule.Kind.DEPLOY:
        return PERCENT
    if kind in (AlertRule.Kind.OUTLIER, AlertRule.Kind.ANOMALY):
        return MADS
    if kind == AlertRule.Kind.BURN:
        return BURN
    return units.of_metric(metric, statistic)


def shown(rule: RuleLike, value: float | None) -> str | None:
    if value is None:
        return None  # the admin shows its "empty" mark; a form, an empty field
    return units.display(value, threshold_kind(rule.kind, rule.metric, rule.statistic))


def measured(rule: RuleLike, value: float | None) -> str | None:
    """A measured value to 4 significant digits, in the rule's units: display() shows a float
    exactly, as a typed threshold must read back as itself, and a percentile has 17 digits."""
    return shown(rule, None if value is None else float(f"{value:.4g}"))
