from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PUBLIC_PATH = "vendor/plotly.min.js"


class PlotlyFinder(BaseFinder):
    """Serves the plotly.js that ships inside the pinned `plotly` package (never a CDN), as
    static/vendor/plotly.min.js, without copying it into the repository."""

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        match = str(PLOTLY_JS) if path == PUBLIC_PATH else None
        if find_all:
            return [match] if match else []
        return match

    def list(self, ignore_patterns):
        storage = FileSystemStorage(location=PLOTLY_JS.parent)
        storage.prefix = "vendor"  # collectstatic puts the file under this folder
        yield PLOTLY_JS.name, storage
