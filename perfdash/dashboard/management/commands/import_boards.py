from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from perfdash.dashboard import board_files, boards


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
                text = sys.stdin.buffer.read()
            else:
                with open(file, "rb") as f:
                    text = f.read()
        except OSError as exc:
            raise CommandError(f"{file}: {exc.strerror}") from None
        try:
            loaded = board_files.load(text)
        except boards.BoardError as exc:
            raise CommandError(f"{file}: {exc}") from None
        for board in loaded:
            self.stdout.write(f"{board.slug}: {board.name}, {board.panels.count()} panels")
