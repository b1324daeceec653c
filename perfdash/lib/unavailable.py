"""Answers for while the database is unreachable (a restart, a failover): 503 with
Retry-After, as JSON on the APIs and the pages' data, as a short page that retries itself
elsewhere — never a 500.

Views raise the database's error on their first query (the token lookup, the session);
`DatabaseUnavailableMiddleware` answers those. An error in another middleware's response
phase (saving a session) never reaches a middleware hook, only the 500 handler, which
looks at the exception being handled.
"""

from __future__ import annotations

import logging
import sys

import psycopg
from django.contrib.auth.models import AnonymousUser
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, HttpResponseServerError, JsonResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5
# The database is away (restart, failover, dropped connection). COPY and binary cursors raise
# psycopg's own errors, which Django does not wrap.
DATABASE_AWAY = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
JSON_PATHS = ("/api/", "/v1/", "/data/")


def unavailable(request) -> HttpResponse:
    log.warning("database unavailable: answered %s with 503", request.path)
    if request.path.startswith(JSON_PATHS):
        response = JsonResponse({"error": "database unavailable; retry later"}, status=503)
    else:
        # No request context: the user and the session live in the database that is away.
        page = render_to_string("503.html", {"user": AnonymousUser(), "retry_after": RETRY_AFTER_S})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        return unavailable(request) if isinstance(exception, DATABASE_AWAY) else None


def server_error(request) -> HttpResponse:
    """handler500: the database's error from a middleware becomes a 503 too."""
    if isinstance(sys.exc_info()[1], DATABASE_AWAY):
        return unavailable(request)
    return HttpResponseServerError(render_to_string("500.html"))
