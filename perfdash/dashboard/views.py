from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from perfdash.dashboard import boards, compare_page, explore, panels, slo_page
from perfdash.dashboard.models import Board
from perfdash.forecasting.models import CapacityForecast
from perfdash.forecasting.tasks import refit as refit_task
from perfdash.health import gauges as health
from perfdash.lib.redis import client as redis_client
from perfdash.lib.redis import key as redis_key
from perfdash.metrics import query
from perfdash.metrics.scope import QueryError


def _page(request, template: str, **fixed: str):
    try:
        view = panels.View.from_params(request.GET, **fixed)
    except QueryError as exc:
        return HttpResponseBadRequest(f"Bad filter: {exc}", content_type="text/plain")
    context = {"view": view, "windows": list(panels.WINDOWS), "growth_percent": f"{view.growth * 100:g}"}
    if view.agent:
        context["compare_url"] = compare_page.against_its_node(view.agent, view.node, view.window)
    return render(request, template, context)


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
def capacity(request):
    if not CapacityForecast.objects.exists():
        _queue_refit()  # a new installation: the first forecasts should not wait for the hourly beat
    return _page(request, "dashboard/capacity.html", page="capacity")


@login_required
@require_GET
def compare(request):
    """Two cohorts of a metric compared: the page reads the comparison its URL describes."""
    context = compare_page.choices(request.GET.get("metric") or compare_page.DEFAULT_METRIC)
    return render(request, "dashboard/compare.html", {**context, "windows": list(panels.WINDOWS)})


@login_required
@require_GET
def explore_page(request):
    """Any metric, statistics, filters and a breakdown, all from the URL; the page draws what
    /data/explore answers and then updates live. A bad parameter is a 400 (the page says which)."""
    status = 200
    try:
        view = explore.Explore.from_params(request.GET)
    except QueryError:
        view, status = explore.Explore(), 400
    context = {
        **compare_page.choices(view.metric),
        "view": view,
        "windows": list(panels.WINDOWS),
        "ratios": explore.RATIOS,
        "stats": query.STATS,
        "groups": query.breakdowns(),
    }
    return render(request, "dashboard/explore.html", context, status=status)


@login_required
@require_GET
def explore_data(request):
    try:
        return JsonResponse(explore.build(explore.Explore.from_params(request.GET)))
    except QueryError as exc:
        return JsonResponse({"error": str(exc), "param": exc.param}, status=400)


@login_required
@require_GET
def board_list(request):
    found = Board.objects.prefetch_related("panels")
    return render(request, "dashboard/boards.html", {"boards": found})


@login_required
@require_GET
def board_page(request, slug: str):
    """A board's panels, drawn from /data/board/<slug> and then live; ?window= applies to all."""
    board = get_object_or_404(Board, slug=slug)
    status = 200
    try:
        window = boards.check_window(request.GET.get("window", "").strip())
    except boards.BoardError:
        window, status = "", 400
    context = {"board": board, "window": window, "windows": list(panels.WINDOWS)}
    return render(request, "dashboard/board.html", context, status=status)


@login_required
@require_GET
def board_data(request, slug: str):
    try:
        window = boards.check_window(request.GET.get("window", "").strip())
    except boards.BoardError as exc:
        return JsonResponse({"error": str(exc), "param": "window"}, status=400)
    data = Board.data(slug, window)
    if data is None:
        return JsonResponse({"error": f"no board {slug!r}"}, status=404)
    return JsonResponse(data)


@login_required
@require_GET
def slos(request):
    return render(request, "dashboard/slos.html", {"note": slo_page.PRECISION_NOTE})


@login_required
@require_GET
def slos_data(request):
    """Every SLO's status; the page asks again every minute (budgets move over minutes)."""
    return JsonResponse(slo_page.build())


@login_required
@require_POST
def refit(request):
    """Refit the forecasts now; open capacity pages redraw when the new ones are stored."""
    return JsonResponse({"queued": _queue_refit()}, status=202)


REFIT_EVERY_S = 30


def _queue_refit() -> bool:
    # At most one queued refit per half minute from all web processes (the mark is in Redis):
    # a refit takes seconds, and a second one would only wait for the first one's lock.
    if not redis_client().set(redis_key("forecast-refit-queued"), 1, nx=True, ex=REFIT_EVERY_S):
        return False
    refit_task.delay()
    return True


@login_required
@require_GET
def data(request, page: str):
    """The data a page draws on first paint (the live socket sends the same shape)."""
    if page == "health":  # not a page: what every page's header polls (perfdash.js)
        return JsonResponse(health.status(time.time()))
    if page not in panels.PAGES:
        return JsonResponse({"error": f"unknown page {page!r}"}, status=404)
    try:
        view = panels.View.from_params(request.GET, page=page)
        return JsonResponse(panels.build(view))
    except QueryError as exc:
        return JsonResponse({"error": str(exc), "param": exc.param}, status=400)
