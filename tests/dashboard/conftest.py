"""Dashboard tests' world: a logged-in viewer, an ingest token's id."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from perfdash.api.models import ApiToken


@pytest.fixture
def viewer(client, db):
    client.force_login(User.objects.create_user("viewer", password="x" * 12))
    return client


@pytest.fixture
def token(db) -> int:
    return ApiToken.issue("t", ["ingest"])[0].id


@pytest.fixture(scope="session", autouse=True)
def live_thread_connection_closed(django_db_setup):
    """The live computes' thread keeps its database connection (as it should in a server);
    close it before the test database is dropped."""
    yield
    from django.db import connections

    from perfdash.dashboard.consumers import _COMPUTES

    _COMPUTES.submit(connections.close_all).result()
