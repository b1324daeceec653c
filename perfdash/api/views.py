"""Public HTTP API v1: ingest (collectors), read (stats, histogram, series), events and compare."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from collectors import event as event_protocol
from perfdash.api.decorators import error, token_required
from perfdash.compare import cohorts, words
from perfdash.compare import params as compare_params
from perfdash.detect import anomaly as anomalies
from perfdash.detect import outliers, slo
from perfdash.detect.models import SLO
from perfdash.events.models import Event
from perfdash.health import measure
from perfdash.ingest import cardinality, ratelimit
from perfdash.ingest.models import PendingBatch
from perfdash.ingest.tasks import wake
from perfdash.ingest.validate import Limits, ProtocolError, decode_body, parse_batch
from perfdash.lib.durations import DAY_S, parse_duration
from perfdash.lib.unavailable import RETRY_AFTER_S
from perfdash.metrics import query
from perfdash.metrics.scope import scope_from, window_seconds
from perfdash.otlp.models import coarse_note

log = logging.getLogger(__name__)


def method(*names: str):
    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in names:
                allowed = " or ".join(names)
                response = error(f"method {request.method} not allowed; use {allowed}", 405)
                response["Allow"] = ", ".join(names)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _limits() -> Limits:
    return Limits(
        max_points=settings.INGEST_MAX_POINTS,
        max_tags=settings.INGEST_MAX_TAGS,
        max_name=settings.INGEST_MAX_NAME_LENGTH,
        max_body=settings.INGEST_MAX_BODY_BYTES,
        max_future_s=settings.INGEST_MAX_FUTURE_SECONDS,
        max_age_s=settings.ROLLUP_RETENTION_DAYS * DAY_S,
    )


def _body(request, limits: Limits) -> bytes:
    """The request's body, decompressed, within the limits (ProtocolError otherwise)."""
    try:
        body = request.body
    except RequestDataTooBig:
        raise ProtocolError(f"body is larger than {limits.max_body} bytes", status=413) from None
    content_type, encoding = request.META.get("CONTENT_TYPE", ""), request.headers.get("Content-Encoding", "")
    return decode_body(body, content_type, encoding, limits)


@csrf_exempt
@method("POST")
@token_required("ingest")
def ingest(request):
    limits, now = _limits(), time.time()
    try:
        batch = parse_batch(_body(request, limits), limits, now)
    except ProtocolError as exc:
        measure.push("web", ("perfdash_batches_refused_total", 1, {"reason": "invalid"}))
        return JsonResponse(exc.as_json(), status=exc.status)
    # The points rate first: the cardinality check counts a batch's new series once it passes.
    refused = _over_rate(request.token.id, len(batch))
    if refused is not None:
        reason = "rate_limit" if refused.status_code == 429 else "unavailable"
        measure.push("web", ("perfdash_points_refused_total", len(batch), {"reason": reason}))
        return refused
    refused = cardinality.check(request.token.id, batch, now)
    if refused is not None:
        measure.push("web", ("perfdash_points_refused_total", len(batch), {"reason": "cardinality"}))
        return refused.response()
    # Committed to the outbox before the 202: from here on the batch is safe whatever happens
    # to Redis or a worker. None: this batch id is pending already (a re-send).
    pending = PendingBatch.keep(request.token.id, batch)
    if pending is not None:
        try:
            wake(pending, batch.batch_id)
        except Exception as exc:  # the broker is away: the sweeper queues the batch once it is back
            log.warning("ingest queue unavailable, batch kept for the sweeper: %s", type(exc).__name__)
    measure.push("web", ("perfdash_points_accepted_total", len(batch), {}))
    return JsonResponse({"accepted": len(batch), "batch_id": batch.batch_id}, status=202)


COMMON_PARAMS = {"metric", "window", "node", "agent"}


def _read_params(request, extra: set[str]) -> tuple[str, int, query.Scope]:
    params = request.GET
    for k in params:
        if k not in COMMON_PARAMS | extra and not k.startswith("tag."):
            raise query.QueryError(k, f"unknown parameter {k!r}")
    scope = scope_from(params)
    metric = params.get("metric", "")
    if not metric:
        raise query.QueryError("metric", "metric is required")
    return metric, window_seconds("window", params.get("window", "1h")), scope


def _duration(text: str, param: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise query.QueryError(param, str(exc)) from None


def read_view(extra: set[str] = frozenset()):
    """GET-only, token with `read` scope or a session, and the shared parameter errors."""

    def decorator(view):
        # CSRF-exempt: it only ever reads, and otherwise a POST with a session cookie would get
        # the CSRF failure page instead of this API's JSON 405.
        @csrf_exempt
        @method("GET")
        @token_required("read", allow_session=True)
        @wraps(view)
        def wrapper(request):
            try:
                metric, window, scope = _read_params(request, set(extra))
                answer = view(request, metric, window, scope)
                if isinstance(answer, dict) and _percentiles(request, answer):
                    note = coarse_note(metric, window, time.time())
                    if note:
                        answer["precision"] = note
                return JsonResponse(answer, safe=not isinstance(answer, list))
            except query.QueryError as exc:
                return error(str(exc), 400, param=exc.param)
            except query.UnknownMetric:
                return error(f"unknown metric {request.GET.get('metric')!r}", 404, param="metric")

        return wrapper

    return decorator


def _percentiles(request, answer: dict) -> bool:
    """Whether a read's answer holds percentiles: stats and histograms do, a series of one."""
    return "stat" not in answer or answer["stat"] in query.PERCENTILES


@read_view()
def stats(request, metric: str, window: int, scope: query.Scope) -> dict:
    return {"metric": metric, "window": request.GET.get("window", "1h"), **query.stats(metric, window, scope)}


@read_view({"buckets"})
def histogram(request, metric: str, window: int, scope: query.Scope) -> dict:
    try:
        buckets = int(request.GET.get("buckets", "40"))
    except ValueError:
        buckets = 0
    if not 1 <= buckets <= 500:
        raise query.QueryError("buckets", "buckets must be a whole number from 1 to 500")
    result = query.histogram(metric, window, scope, buckets)
    return {"metric": metric, "window": request.GET.get("window", "1h"), **result}


@read_view({"step", "stat"})
def series(request, metric: str, window: int, scope: query.Scope) -> dict:
    step = _duration(request.GET.get("step", "1m"), "step")
    stat = request.GET.get("stat", "p95")
    points = query.series(metric, window, step, stat, scope)
    return {
        "metric": metric,
        "window": request.GET.get("window", "1h"),
        "step": request.GET.get("step", "1m"),
        "stat": stat,
        "points": [[time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), v] for t, v in points],
    }


@read_view({"stat", "peers", "tolerance"})
def outlier_agents(request, metric: str, window: int, scope: query.Scope) -> list[dict]:
    """The agents far above their peers (of their node, or of the fleet), farthest first."""
    if scope.agent or scope.tag_key:
        raise query.QueryError("agent" if scope.agent else f"tag.{scope.tag_key}", "outliers take only node=")
    stat = request.GET.get("stat", "p95")
    if stat not in (allowed := outliers.STATS):
        raise query.QueryError("stat", f"stat must be one of {', '.join(allowed)}")
    peers = request.GET.get("peers", "node")
    if peers not in outliers.PEERS:
        raise query.QueryError("peers", f"peers must be one of {', '.join(outliers.PEERS)}")
    tolerance = _number(request.GET.get("tolerance", "5"), "tolerance", 0.5, 20)
    if not query.known_metric(metric):
        raise query.UnknownMetric(metric)
    found = outliers.find(
        metric,
        stat,
        window,
        peers,
        tolerance,
        settings.OUTLIER_MIN_PEERS,
        settings.OUTLIER_MIN_COUNT,
        scope.node,
    )
    return [j.as_json() for j in sorted(found, key=lambda j: -(j.mads or 0)) if j.outlier()]


@read_view({"stat", "tolerance"})
def anomaly(request, metric: str, window: int, scope: query.Scope) -> dict:
    """The statistic over the last hour against what this time of day usually brings."""
    stat = request.GET.get("stat", "p95")
    if stat not in (allowed := query.STATS):
        raise query.QueryError("stat", f"stat must be one of {', '.join(allowed)}")
    tolerance = _number(request.GET.get("tolerance", "4"), "tolerance", 0.5, 20)
    if not query.known_metric(metric):
        raise query.UnknownMetric(metric)
    judged = anomalies.judge(metric, stat, scope, tolerance)
    return {
        "metric": metric,
        "stat": stat,
        "tolerance": tolerance,
        **judged.as_json(tolerance),
        "explanation": anomalies.explain(metric, stat, judged),
    }


@csrf_exempt
@method("GET")
@token_required("read", allow_session=True)
def slos(request):
    """Every enabled SLO: attainment, budget left and burn rates (docs/slos.md)."""
    now = time.time()
    return JsonResponse([slo.status(s, now) for s in SLO.objects.filter(enabled=True)], safe=False)


def _number(text: str, param: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:
        raise query.QueryError(param, f"{param} must be a number from {lo:g} to {hi:g}")
    return value


@csrf_exempt
@method("GET", "POST")
def events(request):
    """POST an event (scope `ingest`), or GET the events of a window (scope `read` or a session)."""
    return _post_event(request) if request.method == "POST" else _list_events(request)


@token_required("ingest")
def _post_event(request):
    limits = replace(_limits(), max_body=event_protocol.MAX_BODY)
    try:
        event = event_protocol.parse(_body(request, limits), time.time(), limits)
    except ProtocolError as exc:
        return JsonResponse(exc.as_json(), status=exc.status)
    # An event counts as one point: a script stuck in a loop must not fill the table faster
    # than the token may send points.
    refused = _over_rate(request.token.id, 1)
    if refused is not None:
        return refused
    return JsonResponse({"id": Event.record(request.token.id, event).id}, status=201)


def _over_rate(token_id: int, points: int) -> JsonResponse | None:
    """None if `points` more are within the token's INGEST_RATE_LIMIT; else the answer."""
    try:
        allowed = ratelimit.allow(token_id, points)
    except Exception as exc:  # Redis counts the rate: the sender keeps what it sent and retries
        log.warning("rate limit unavailable: %s", type(exc).__name__)
        response = error("ingest rate limit unavailable; retry later", 503)
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
    if allowed:
        return None
    response = error(f"over the rate limit of {settings.INGEST_RATE_LIMIT} points/s", 429)
    response["Retry-After"] = "1"
    return response


EVENT_PARAMS = {"window", "kind"}


@token_required("read", allow_session=True)
def _list_events(request):
    try:
        window, kind = _events_params(request.GET)
    except query.QueryError as exc:
        return error(str(exc), 400, param=exc.param)
    now = time.time()
    rows = Event.between(now - window, now, kind=kind)
    return JsonResponse(
        {"window": request.GET.get("window", "24h"), "events": [_event_json(r) for r in rows]}
    )


def _events_params(params) -> tuple[int, str]:
    for k in params:
        if k not in EVENT_PARAMS:
            raise query.QueryError(k, f"unknown parameter {k!r}")
    window = window_seconds("window", params.get("window", "24h"))
    kind = params.get("kind", "")
    if kind and kind not in event_protocol.KINDS:
        raise query.QueryError("kind", f"kind must be one of {', '.join(event_protocol.KINDS)}")
    return window, kind


def _event_json(row: dict) -> dict:
    return {**row, "ts": row["ts"].isoformat(timespec="milliseconds").replace("+00:00", "Z")}


@csrf_exempt
@method("GET")
@token_required("read", allow_session=True)
def compare(request):
    """Two cohorts of one metric compared, with intervals and a verdict (docs/read-api.md)."""
    now = time.time()
    try:
        asked = compare_params.parse(request.GET, now)
        result = cohorts.compare_cohorts(
            asked.metric, asked.a, asked.b, asked.options, now, histograms=asked.histograms
        )
        rows, left_out = (
            cohorts.breakdown(asked.metric, asked.a, asked.b, asked.by, asked.options, now)
            if asked.by
            else ([], 0)
        )
    except query.QueryError as exc:
        return error(str(exc), 400, param=exc.param)
    except query.UnknownMetric:
        return error(f"unknown metric {request.GET.get('metric')!r}", 404, param="metric")
    a, b = words.labels(asked.a, asked.b)
    body = {
        "metric": asked.metric,
        **result.as_json(),
        "summary": _said(asked, result, a, b),
        "shown": words.shown(asked.metric, result, asked.options.confidence),
        "labels": {"a": a, "b": b},
        "ranges": {"a": [asked.a.start, asked.a.end], "b": [asked.b.start, asked.b.end]},
    }
    if asked.histograms and body["histograms"]["a"]["lo"]:
        edges = body["histograms"]["a"]
        body["histograms"]["ticks"] = words.ticks(asked.metric, edges["lo"][0], edges["hi"][-1])
    if asked.by:
        body["breakdown"] = {
            "by": asked.by,
            "rows": [_row(asked, row, a, b) for row in rows],
            "left_out": left_out,
        }
    return JsonResponse(body)


def _said(asked, result, a: str, b: str) -> str:
    o = asked.options
    return words.sentence(asked.metric, result, a, b, o.confidence, o.min_effect)


def _row(asked, row: dict, a: str, b: str) -> dict:
    """One value of a breakdown: its statistics, differences and verdict in words."""
    result = row.pop("comparison")
    return {
        **row,
        "summary": _said(asked, result, f"{a} ({row['value']})", f"{b} ({row['value']})"),
        "shown": words.shown(asked.metric, result, asked.options.confidence),
    }
