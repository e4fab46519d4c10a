"""One error shape for every error: `{"error": {"code", "message", "details"}}`.

DRF exceptions, Django's 404/500 handlers and our own domain errors all end here, so a
client can always branch on `error.code`.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from psycopg_pool import PoolTimeout
from rest_framework import exceptions, status
from rest_framework.response import Response

log = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """A domain error with a stable code: `raise ApiError("session_busy", "...", status=409)`."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 400,
        details: dict | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, code=code)
        self.status_code = status
        self.error_code = code
        self.details = details or {}
        self.retry_after = retry_after  # seconds, sent as Retry-After (429, 503)


_DEFAULT_CODES = {
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "validation_error",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _code_and_message(exc: exceptions.APIException) -> tuple[str, str]:
    detail = exc.detail
    if isinstance(exc, ApiError):
        return exc.error_code, str(detail)
    code = next((c for cls, c in _DEFAULT_CODES.items() if isinstance(exc, cls)), None)
    code = code or getattr(detail, "code", None) or exc.default_code
    if isinstance(exc, exceptions.ValidationError):
        return code, "The request is invalid; see details for each field."
    if isinstance(exc, exceptions.Throttled):
        return code, "Too many requests; retry after the number of seconds in Retry-After."
    return code, str(detail)


BUSY_RETRY_AFTER_SECONDS = 2


def _out_of_database_connections(exc: BaseException) -> bool:
    """psycopg's pool gave up waiting for a free connection (Django wraps its error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PoolTimeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if _out_of_database_connections(exc):
        # Overload, not a bug and not the client's fault: say so, and when to come back.
        log.warning("no database connection free for %s", context.get("view").__class__.__name__)
        return Response(
            error_body("service_busy", "The service is busy; retry in a few seconds."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )
    if not isinstance(exc, exceptions.APIException):
        # A bug, not the client's fault: log it and answer without internals.
        log.exception("unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            error_body("internal_error", "Something went wrong on our side."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    code, message = _code_and_message(exc)
    details: dict = {}
    if isinstance(exc, ApiError):
        details = exc.details
    elif isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    elif isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        details = {"retry_after": int(exc.wait + 0.999)}

    headers = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(int(exc.wait + 0.999))
    elif isinstance(exc, ApiError) and exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after + 0.999))
    return Response(error_body(code, message, details), status=exc.status_code, headers=headers)


def not_found(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "No such resource."), status=404)


def server_error(request) -> JsonResponse:
    return JsonResponse(
        error_body("internal_error", "Something went wrong on our side."), status=500
    )


def bad_request(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("bad_request", "Bad request."), status=400)


def permission_denied(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("permission_denied", "Permission denied."), status=403)
