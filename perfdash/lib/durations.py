from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+)([smhd])\Z")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'90s', '5m', '1h', '7d' -> seconds. Raises ValueError."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 5m, 1h, 24h or 7d")
    return int(m.group(1)) * _UNIT[m.group(2)]
