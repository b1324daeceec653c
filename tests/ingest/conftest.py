"""The ingest tests' world: a collector's token over clean tables, and a queue of a test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from perfdash.api.models import ApiToken
from tests.conftest import drop_keys


@pytest.fixture
def token(transactional_db, clean_tables) -> str:
    return ApiToken.issue("collector", ["ingest"])[1]


@pytest.fixture
def isolated_queue(redis_queue) -> Iterator[str]:
    # Its own session id, hence its own Redis key prefix: the session's worker must not
    # take this test's batch.
    session = f"{os.environ['PERFDASH_TEST_SESSION']}-isolated"
    drop_keys(f"t{session}:")
    yield session
    drop_keys(f"t{session}:")
