from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+)([smhd])\Z")
HOUR_S = 3600
DAY_S = 24 * HOUR_S
_UNIT = {"s": 1, "m": 60, "h": HOUR_S, "d": DAY_S}


def parse_duration(text: str) -> int:
    """'90s', '5m', '1h', '7d' -> seconds. Raises ValueError."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 5m, 1h, 24h or 7d")
    return int(m.group(1)) * _UNIT[m.group(2)]
