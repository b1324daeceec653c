from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.utils import timezone

from perfdash.api.models import ApiToken
from perfdash.ingest.models import IngestedBatch

DEMO_TOKEN = "demo-fleet"
LOGIN_FILE = Path(settings.BASE_DIR) / ".demo-login"


class Command(BaseCommand):
    help = (
        "For `make run`: issue a fresh token for the demo fleet (revoking the previous one) and "
        "make a first admin login if there is none. Prints JSON."
    )

    def handle(self, *args, **options) -> None:
        first_start = not IngestedBatch.objects.filter(token__name=DEMO_TOKEN).exists()
        ApiToken.objects.filter(name=DEMO_TOKEN, revoked_at__isnull=True).update(revoked_at=timezone.now())
        _, raw = ApiToken.issue(DEMO_TOKEN, ["ingest"])
        login = "use your account"
        if not User.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", password=password)
            write_private(LOGIN_FILE, f"username: admin\npassword: {password}\n")
        if LOGIN_FILE.exists():
            login = f"user admin, password in {LOGIN_FILE.name}"
        self.stdout.write(json.dumps({"token": raw, "first_start": first_start, "login": login}))


def write_private(path: Path, text: str) -> None:
    """Readable by the owner only from the moment it exists (not made, then narrowed)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
