"""POST /v1/metrics: OTLP/HTTP metrics export (docs/otlp.md).

Every answer is in the request's encoding (protobuf or JSON): an `ExportMetricsServiceResponse`
on success, with a partial success naming the data points refused; a `google.rpc.Status` on
error. Never a 500: a body that cannot be read is a 400, whatever is wrong with it.
"""

from __future__ import annotations

import logging
import time

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from perfdash.api.models import ApiToken
from perfdash.api.views import _limits
from perfdash.lib.unavailable import DATABASE_AWAY, RETRY_AFTER_S
from perfdash.otlp import wire
from perfdash.otlp.receive import Refused, receive

log = logging.getLogger(__name__)

# google.rpc.Code of each HTTP status answered.
_CODES = {400: 3, 401: 16, 405: 12, 413: 3, 415: 3, 422: 3, 429: 8, 503: 14}


def _answer(message, kind: str, status: int = 200, retry_after: int | None = None) -> HttpResponse:
    response = HttpResponse(wire.encode(message, kind), status=status, content_type=kind)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="perfdash"'
    return response


def _error(kind: str, status: int, message: str, retry_after: int | None = None) -> HttpResponse:
    return _answer(wire.status(_CODES.get(status, 2), message), kind, status, retry_after)


def _token(request) -> ApiToken | None:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    return ApiToken.authenticate(raw.strip(), "ingest")


@csrf_exempt
def metrics(request) -> HttpResponse:
    if request.method != "POST":
        response = _error(wire.JSON, 405, f"method {request.method} not allowed; use POST")
        response["Allow"] = "POST"
        return response
    try:
        kind = wire.content_type(request.META.get("CONTENT_TYPE", ""))
    except wire.WireError as exc:
        return _error(wire.JSON, exc.status, str(exc))
    limits, now = _limits(), time.time()
    try:
        token = _token(request)
        if token is None:
            return _error(kind, 401, "missing, invalid or revoked token, or no 'ingest' scope")
        try:
            body = request.body
        except RequestDataTooBig:
            return _error(kind, 413, f"body is larger than {limits.max_body} bytes")
        body = wire.inflate(body, request.headers.get("Content-Encoding", ""), limits.max_body)
        report, _ = receive(token.id, body, kind, limits, now)
    except wire.WireError as exc:
        return _error(kind, exc.status, str(exc))
    except Refused as exc:
        return _error(kind, exc.status, exc.message, exc.retry_after)
    except DATABASE_AWAY as exc:
        log.warning("database unavailable: OTLP export answered 503: %s", type(exc).__name__)
        return _error(kind, 503, "database unavailable; retry later", RETRY_AFTER_S)
    return _answer(wire.response(report.rejected, report.message()), kind)
