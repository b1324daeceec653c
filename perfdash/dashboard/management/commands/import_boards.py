from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from perfdash.dashboard import boards
from perfdash.dashboard.models import Board


class Command(BaseCommand):
    help = (
        "Create or update boards from a JSON file written by export_boards, by slug: importing "
        "the same file again changes nothing. Every panel's query is checked first; one bad "
        "panel loads nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="the JSON file ('-' reads standard input)")

    def handle(self, *args, file: str, **options) -> None:
        try:
            if file == "-":
                data = json.load(sys.stdin)
            else:
                with open(file) as f:
                    data = json.load(f)
        except OSError as exc:
            raise CommandError(f"{file}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file}: not JSON: {exc}") from None
        try:
            specs = boards.parse(data)
        except boards.BoardError as exc:
            raise CommandError(f"{file}: {exc}") from None
        loaded = Board.load(specs)
        for board in loaded:
            self.stdout.write(f"{board.slug}: {board.name}, {board.panels.count()} panels")
