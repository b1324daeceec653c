from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from perfdash.health import gauges
from perfdash.lib.redis import client
from tests.conftest import drop_keys


@pytest.fixture(autouse=True)
def nothing_recorded() -> Iterator[None]:
    """No recording time left behind: a test's recording (some at made-up times) must not turn
    later tests' headers amber, nor an earlier one's decide this test's status."""
    client().delete(gauges.recorded_key())
    yield
    client().delete(gauges.recorded_key())


@pytest.fixture
def own_queue(redis_queue) -> Iterator[str]:
    """A session id of this test's own, so a Redis key prefix and queue of its own: the
    session's worker must not store what only this test's worker should."""
    session = f"{os.environ['PERFDASH_TEST_SESSION']}-health"
    drop_keys(f"t{session}:")
    yield session
    drop_keys(f"t{session}:")
