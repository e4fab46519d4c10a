"""One error shape for every error: `{"error": {"code", "message", "details"}}`.

DRF exceptions, Django's 404/500 handlers and our own domain errors all end here, so a
client can always branch on `error.code`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import sync_and_async_middleware
from psycopg_pool import PoolTimeout
from rest_framework import exceptions, status
from rest_framework.response import Response

from beamclaw.errors import DomainError, error_body, request_too_large

log = logging.getLogger(__name__)


class DomainAPIException(DomainError, exceptions.APIException):
    """A DomainError where DRF lets only its own exceptions through: raised in an
    authenticator, it must be an APIException for DRF to answer it as a refusal."""

    def __init__(self, code: str, message: str, **kwargs) -> None:
        super().__init__(code, message, **kwargs)
        # What DRF and anything reading an APIException looks at, kept equal to ours.
        self.status_code = self.status
        self.detail = exceptions.ErrorDetail(message, code=code)


_DEFAULT_CODES = {
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "validation_error",
}


def _code_and_message(exc: exceptions.APIException) -> tuple[str, str]:
    detail = exc.detail
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


def internal_error_body() -> tuple[dict, str]:
    """The answer to a bug, and the reference that ties it to the logged traceback."""
    reference = uuid.uuid4().hex[:16]
    message = f"Something went wrong on our side; quote reference {reference} if you report it."
    return error_body("internal_error", message, {"reference": reference}), reference


def exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = request_too_large()
    elif isinstance(exc, SuspiciousOperation):
        exc = DomainError("bad_request", "The request was refused as malformed.")

    if _out_of_database_connections(exc):
        # Overload, not a bug and not the client's fault: say so, and when to come back.
        log.warning("no database connection free for %s", context.get("view").__class__.__name__)
        return Response(
            error_body("service_busy", "The service is busy; retry in a few seconds."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, DomainError):
        return domain_error_response(exc)
    if not isinstance(exc, exceptions.APIException):
        # A bug, not the client's fault: log it and answer without internals.
        body, reference = internal_error_body()
        view = context.get("view").__class__.__name__
        path = getattr(context.get("request"), "path", "")
        log.exception("unhandled error in %s at %s (reference %s)", view, path, reference)
        response = Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
        response._has_been_logged = True  # Django would log it again, without the reference
        return response

    code, message = _code_and_message(exc)
    details: dict = {}
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    elif isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        details = {"retry_after": int(exc.wait + 0.999)}

    headers = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(int(exc.wait + 0.999))
    return Response(error_body(code, message, details), status=exc.status_code, headers=headers)


def domain_error_response(error: DomainError) -> Response:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(int(error.retry_after + 0.999))
    return Response(
        error_body(error.code, error.message, error.details), status=error.status, headers=headers
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "No such resource."), status=404)


def _in_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if response.get("Content-Type", "").startswith("application/json"):
        return response
    if response.status_code == 404:
        return not_found(request)
    if response.status_code == 405:
        allowed = response.get("Allow", "")
        replacement = JsonResponse(
            error_body("method_not_allowed", f"Allowed methods: {allowed or 'none'}."),
            status=405,
        )
        replacement["Allow"] = allowed
        return replacement
    return response


@sync_and_async_middleware
def json_errors_middleware(get_response: Callable[[HttpRequest], HttpResponse]):
    """404 and 405 in the one JSON shape wherever they come from: Django's own 404 page
    (HTML; with DEBUG on it lists every URL pattern) and the empty 405 of `require_GET`.
    Sits outside CommonMiddleware, which may first turn a 404 into a redirect to the
    address with a slash. Async under ASGI, so it costs no thread hop."""
    if iscoroutinefunction(get_response):

        async def amiddleware(request: HttpRequest) -> HttpResponse:
            return _in_json(request, await get_response(request))

        return amiddleware

    def middleware(request: HttpRequest) -> HttpResponse:
        return _in_json(request, get_response(request))

    return middleware


def server_error(request: HttpRequest) -> JsonResponse:
    """Django's 500 handler (views outside DRF), called while the exception is handled."""
    body, reference = internal_error_body()
    log.exception("unhandled error at %s (reference %s)", request.path, reference)
    response = JsonResponse(body, status=500)
    response._has_been_logged = True  # Django would log the traceback again, without it
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        error = request_too_large()
        return JsonResponse(error_body(error.code, error.message), status=error.status)
    return JsonResponse(error_body("bad_request", "Bad request."), status=400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("permission_denied", "Permission denied."), status=403)
