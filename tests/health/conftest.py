from __future__ import annotations

from collections.abc import Iterator

import pytest

from perfdash.health import gauges
from perfdash.lib.redis import client


@pytest.fixture(autouse=True)
def nothing_recorded() -> Iterator[None]:
    """No recording time left behind: a test's recording (some at made-up times) must not turn
    later tests' headers amber, nor an earlier one's decide this test's status."""
    client().delete(gauges.recorded_key())
    yield
    client().delete(gauges.recorded_key())
