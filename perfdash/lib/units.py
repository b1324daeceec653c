"""Quantities for people: a threshold is typed and shown as "100 MB", "2 s" or "250 ms" and
stored as a float in its base unit (ms for `_ms` metrics, bytes for `_bytes`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, DecimalException, Inexact, localcontext


@dataclass(frozen=True)
class Kind:
    """What a quantity measures: the units it may be typed in and the ones it is shown in."""

    what: str  # says which units a value takes, in an error message
    factors: dict[str, Decimal]  # spelling, lower case -> base units in one of it
    shown: tuple[str, ...]  # units a value is shown in, smallest first
    joiner: str = " "  # between the number and the unit

    def factor(self, unit: str) -> Decimal:
        return self.factors[unit.lower()]


def _kind(what: str, shown: dict[str, str], also: dict[str, str] | None = None, joiner: str = " ") -> Kind:
    # A bare number is in the base unit.
    factors = {unit.lower(): Decimal(f) for unit, f in {"": "1", **shown, **(also or {})}.items()}
    return Kind(what, factors, tuple(shown), joiner)


MILLISECONDS = _kind(
    "a duration (ms, s, min, h)",
    {"ms": "1", "s": "1000", "min": "60000", "h": "3600000"},
    {"sec": "1000", "m": "60000"},
)
SECONDS = _kind(
    "a duration (ms, s, min, h)",
    {"ms": "0.001", "s": "1", "min": "60", "h": "3600"},
    {"sec": "1", "m": "60"},
)
# Decimal units, as the project counts memory (100 MB = 100,000,000 bytes); binary ones are
# accepted for people who think in them.
BYTES = _kind(
    "a size in bytes (B, kB, MB, GB, TB; or KiB, MiB, GiB, TiB)",
    {"B": "1", "kB": "1e3", "MB": "1e6", "GB": "1e9", "TB": "1e12"},
    {"KiB": f"{2**10}", "MiB": f"{2**20}", "GiB": f"{2**30}", "TiB": f"{2**40}"},
)
NUMBER = _kind("a plain number", {"": "1"})
PER_SECOND = _kind("a rate per second (5 or 5/s)", {"/s": "1"}, joiner="")
DAYS = _kind("a number of days (7 or 7 d)", {"d": "1"}, {"day": "1", "days": "1"})
# A growth: a share of a level per minute, stored as a fraction (0.01 is 1 %/min).
PERCENT_PER_MINUTE = _kind("a growth (1 %/min)", {"%/min": "0.01"})

# A number, then maybe a unit; no digit grouping, since "1,5" means 1.5 in much of the world.
_QUANTITY = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d.,\s]*)\s*\Z")


def of_metric(metric: str, statistic: str) -> Kind:
    """The kind of a statistic of a metric, from the metric's name suffix: a count or a rate
    of points is a number whatever the metric measures, a growth a share of it per minute."""
    if statistic == "growth":
        return PERCENT_PER_MINUTE
    if statistic == "count":
        return NUMBER
    if statistic == "rate":
        return PER_SECOND
    if metric.endswith("_ms"):
        return MILLISECONDS
    if metric.endswith("_seconds"):
        return SECONDS
    if metric.endswith("_bytes"):
        return BYTES
    return NUMBER


def parse(text: str, kind: Kind) -> float:
    """'2 s', '2000', '100MB' -> the value in the kind's base unit; a bare number is in the
    base unit. Raises ValueError with a message for people."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text.strip()!r} is not a number, with or without a unit.")
    number, unit = match.groups()
    if unit.lower() not in kind.factors:
        raise ValueError(f"Give {kind.what}: {unit!r} is not a unit for it.")
    try:
        value = float(Decimal(number) * kind.factor(unit))
    except DecimalException:
        value = math.inf
    if math.isinf(value):
        raise ValueError(f"{text.strip()!r} is too large.")
    return value


def display(value: float, kind: Kind) -> str:
    """The value in the largest unit it is at least one of and that shows it exactly (100 s,
    not 1.666… min), so that parse(display(v)) == v; below one of every unit, in the smallest."""
    if not math.isfinite(value):
        return repr(value)
    exact = Decimal(repr(value))
    shown = [(unit, _divided(exact, kind.factor(unit))) for unit in kind.shown]
    exactly = [(unit, number) for unit, number in shown if number is not None]
    unit, number = next(((u, n) for u, n in reversed(exactly) if abs(n) >= 1), exactly[0])
    return f"{_plain(number)}{kind.joiner}{unit}".rstrip()


def _divided(number: Decimal, by: Decimal) -> Decimal | None:
    """number / by, or None if no decimal number of 28 digits is exactly that."""
    with localcontext() as context:
        context.traps[Inexact] = True
        try:
            return number / by
        except Inexact:
            return None


def _plain(number: Decimal) -> str:
    """Without an exponent and without trailing zeros: 100, 1.5, 0.000001."""
    text = f"{number.normalize():f}"
    return text if text != "-0" else "0"


def readable(value: float | None, kind: Kind) -> str:
    """The value to three significant digits in the largest unit it is at least one of
    ("1.98 s", "250 ms", "3.2 MB"): for reading, not for typing back."""
    if value is None or not math.isfinite(value):
        return "n/a"
    units = [(unit, float(kind.factor(unit))) for unit in kind.shown]
    unit, factor = next(((u, f) for u, f in reversed(units) if abs(value) >= f), units[0])
    number = value / factor
    text = f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"
    return f"{text}{kind.joiner}{unit}".rstrip()


def percent(fraction: float) -> str:
    """A signed relative change: "+17 %", "-3.4 %"."""
    digits = 1 if abs(fraction) < 0.1 else 0
    return f"{fraction * 100:+.{digits}f} %"


def base_unit(kind: Kind) -> str:
    """The unit values of this kind are stored in ("ms", "B", "/s"; "" for plain numbers)."""
    return next((unit for unit in kind.shown if kind.factor(unit) == 1), "")
