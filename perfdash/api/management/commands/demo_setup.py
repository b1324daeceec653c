from __future__ import annotations

import json
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
            LOGIN_FILE.write_text(f"username: admin\npassword: {password}\n")
            LOGIN_FILE.chmod(0o600)
        if LOGIN_FILE.exists():
            login = f"user admin, password in {LOGIN_FILE.name}"
        self.stdout.write(json.dumps({"token": raw, "first_start": first_start, "login": login}))
