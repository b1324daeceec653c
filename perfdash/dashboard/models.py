"""Boards: named, ordered lists of explorer panels (docs/dashboard.md#boards).

A panel's query is an explorer URL query (`metric=tokens_total&stat=rate&group=model`): a board
is data, exported and imported as JSON (boards.py), never code.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models, transaction

from perfdash.dashboard import boards


class Board(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True, help_text="Its address: /boards/<slug>/.")
    description = models.TextField(blank=True, help_text="Shown under the board's title.")
    empty_hint = models.TextField(
        blank=True,
        help_text="Shown in a panel with no data in the window: what fills this board.",
    )
    position = models.PositiveIntegerField(default=0, help_text="Order in the navigation bar.")

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    def spec(self) -> boards.BoardSpec:
        return boards.BoardSpec(
            name=self.name,
            slug=self.slug,
            description=self.description,
            empty_hint=self.empty_hint,
            position=self.position,
            panels=tuple(p.spec() for p in self.panels.all()),
        )

    @classmethod
    def data(cls, slug: str, window: str = "") -> dict | None:
        """The board's page data (boards.build), None if there is no such board (any longer)."""
        board = cls.objects.filter(slug=slug).prefetch_related("panels").first()
        return None if board is None else boards.build(board.spec(), window)

    @classmethod
    @transaction.atomic
    def load(cls, specs: list[boards.BoardSpec]) -> list[Board]:
        """Creates or updates each board by its slug, its panels replaced by the spec's: loading
        the same file twice changes nothing. All or none."""
        out = []
        for spec in specs:
            fields = {f: getattr(spec, f) for f in ("name", "description", "empty_hint", "position")}
            board, _ = cls.objects.update_or_create(slug=spec.slug, defaults=fields)
            board.panels.all().delete()
            Panel.objects.bulk_create(
                Panel(board=board, position=i, **boards.panel_fields(p)) for i, p in enumerate(spec.panels)
            )
            out.append(board)
        return out


class Panel(models.Model):
    board = models.ForeignKey(Board, on_delete=models.CASCADE, related_name="panels")
    position = models.PositiveIntegerField(default=0)
    title = models.CharField(max_length=200)
    query = models.CharField(
        max_length=1000,
        help_text="An explorer URL query, e.g. metric=tokens_total&stat=rate&group=model&window=1h.",
    )
    chart = models.CharField(max_length=10, choices=boards.CHARTS.items(), default="line")
    units = models.CharField(max_length=40, blank=True, help_text="The y axis' units, e.g. tokens/s.")
    target = models.FloatField(null=True, blank=True, help_text="A target line, in the panel's units.")

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        try:
            boards.check_query(self.query)
        except boards.BoardError as exc:
            raise ValidationError({"query": str(exc)}) from None

    def spec(self) -> boards.PanelSpec:
        return boards.PanelSpec(self.title, self.query, self.chart, self.units, self.target)
