"""Dashboard tests' world: a logged-in viewer."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User


@pytest.fixture
def viewer(client, db):
    client.force_login(User.objects.create_user("viewer", password="x" * 12))
    return client
