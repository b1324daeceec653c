from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from perfdash.dashboard import panels
from perfdash.metrics.query import QueryError


def _page(request, template: str, **fixed: str):
    view = panels.View.from_params(request.GET, **fixed)
    return render(request, template, {"view": view, "windows": list(panels.WINDOWS)})


@login_required
@require_GET
def overview(request, **scope: str):
    """The fleet, or one node (`node=`) or one agent (`agent=`) from the URL path."""
    return _page(
        request, "dashboard/overview.html", page="overview", **{k: v[:128] for k, v in scope.items()}
    )


@login_required
@require_GET
def tools(request):
    return _page(request, "dashboard/tools.html", page="tools")


@login_required
@require_GET
def data(request, page: str):
    """The data a page draws on first paint (the live socket sends the same shape)."""
    if page not in ("overview", "tools"):
        return JsonResponse({"error": f"unknown page {page!r}"}, status=404)
    view = panels.View.from_params(request.GET, page=page)
    try:
        return JsonResponse(panels.build(view))
    except QueryError as exc:
        return JsonResponse({"error": str(exc), "param": exc.param}, status=400)
