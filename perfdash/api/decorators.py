from __future__ import annotations

from functools import wraps

from django.http import JsonResponse

from perfdash.api.models import ApiToken


def error(message: str, status: int = 400, **extra) -> JsonResponse:
    """The one shape of every API error: {"error": "...", ...where}."""
    response = JsonResponse({"error": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="perfdash"'
    return response


def _bearer(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    return raw.strip() if scheme.lower() == "bearer" and raw.strip() else None


def token_required(scope: str, allow_session: bool = False):
    """Let the request through with a live token of `scope` (set as request.token), or, when
    `allow_session`, with a logged-in user."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            raw = _bearer(request)
            request.token = None
            if raw is not None:
                request.token = ApiToken.authenticate(raw, scope)
                if request.token is None:
                    return error(f"invalid or revoked token, or no {scope!r} scope", 401)
            elif not (allow_session and request.user.is_authenticated):
                return error("missing token: send 'Authorization: Bearer <token>'", 401)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
