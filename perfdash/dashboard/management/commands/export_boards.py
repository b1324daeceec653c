from __future__ import annotations

from django.core.management.base import BaseCommand

from perfdash.dashboard import board_files
from perfdash.dashboard.models import Board


class Command(BaseCommand):
    help = "Write every board (or those named by slug) as JSON, for import_boards."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slugs", nargs="*", help="only these boards")
        parser.add_argument("-o", "--output", help="a file to write (default: standard output)")

    def handle(self, *args, slugs: list[str], output: str | None, **options) -> None:
        found = Board.objects.prefetch_related("panels")
        if slugs:
            found = found.filter(slug__in=slugs)
            missing = sorted(set(slugs) - {b.slug for b in found})
            if missing:
                self.stderr.write(f"no board {', '.join(missing)}")
                raise SystemExit(1)
        text = board_files.dumps(found)
        if output:
            with open(output, "w") as f:
                f.write(text)
        else:
            self.stdout.write(text, ending="")
