from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone

SCOPES = ("ingest", "read")


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for collectors (scope `ingest`) or API readers (scope `read`).

    Only the SHA-256 of the token is stored; the token itself is shown once, at creation.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise a token.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.CharField(max_length=40, help_text="Comma-separated: ingest, read.")
    created = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ValueError(f"scopes must be among {', '.join(SCOPES)}")
        raw = "pd_" + secrets.token_urlsafe(30)
        token = cls.objects.create(
            name=name, prefix=raw[:10], token_hash=hash_token(raw), scopes=",".join(sorted(set(scopes)))
        )
        return token, raw

    @classmethod
    def authenticate(cls, raw: str, scope: str) -> ApiToken | None:
        token = cls.objects.filter(token_hash=hash_token(raw), revoked_at__isnull=True).first()
        if token is None or scope not in token.scope_list:
            return None
        return token

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split(",")

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self) -> None:
        ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.refresh_from_db(fields=["revoked_at"])
