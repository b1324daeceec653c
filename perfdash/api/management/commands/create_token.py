from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from perfdash.api.models import SCOPES, ApiToken


class Command(BaseCommand):
    help = "Create an API token and print it once (only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scope", action="append", choices=SCOPES, required=True, help="ingest or read; repeat for both"
        )

    def handle(self, *args, name: str, scope: list[str], **options) -> None:
        try:
            _, raw = ApiToken.issue(name, scope)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(raw)
